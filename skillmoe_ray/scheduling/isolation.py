"""Per-request failure isolation.

A batch that fails deterministically is split until the bad request is alone.

One request the engine cannot take (text its tokenizer rejects,
                                    a prompt too long) must not fail the micro-batch
it shares with other clients' requests. Where the stage reports failures (serving), a chunk whose generate
call
fails deterministically (a bad request,
                         not a lost actor) is generated again in halves, recursively: the request
that fails alone goes to the error handler, the others are answered. Transient failures are raised as they are
(the executor retries them on a fresh expert).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from skillmoe_ray.engines.base import GenOutput, GenRequest
from skillmoe_ray.errors import is_deterministic, one_line
from skillmoe_ray.scheduling.grouping import ExpertGroup

log = logging.getLogger(__name__)
# Called with a part that failed alone and its exception (the stage's error handler)
OnError = Callable[[ExpertGroup, Exception], None]


def generate_isolating(
    generate: Callable[[list[GenRequest]], list[GenOutput]],
    chunk: ExpertGroup,
    on_error: OnError | None,
    stage: str,
) -> list[tuple[ExpertGroup, list[GenOutput]]]:
    """Generate ``chunk``: its (part, outputs) pairs, without the requests that failed alone (``on_error``
    has them). Without ``on_error`` (batch runs stop on a failure) any error is raised as it is."""
    try:
        return [(chunk, generate(chunk.requests))]
    except Exception as exc:
        if on_error is None or not is_deterministic(exc):
            raise
        if len(chunk.requests) == 1:
            log.warning(
                "[%s] expert %s: request %s failed alone (%s)",
                stage,
                chunk.expert,
                chunk.requests[0].tag,
                one_line(exc),
            )
            on_error(chunk, exc)
            return []
    half = len(chunk.requests) // 2
    return [
        *generate_isolating(generate, replace(chunk, requests=chunk.requests[:half]), on_error, stage),
        *generate_isolating(generate, replace(chunk, requests=chunk.requests[half:]), on_error, stage),
    ]
