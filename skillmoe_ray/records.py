"""The records the generation service hands out: one generation, and one stage's statistics.

A :class:`Generation` is what a stage, the method runner, the online router and the reports read of one
(expert, request) pair: the engine's output with its store key, its tag, its share of the seconds its
expert group took, and, for a failed expert (online serving only), the error. The generation service
makes it once; the generation store keeps it as one JSON line (:meth:`Generation.to_json`, the same
fields the store has always held, so shards written before this type read back).

A :class:`StageRecord` is what a stage reports about itself in results.json's ``stages`` and the live
W&B history: its cache key, whether it was cached, its seconds, and the requests and tokens it generated
(:class:`GenerationCounts`, which the generation service returns with the generations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from skillmoe_ray.engines.base import GenOutput

OUTPUT_FIELDS = tuple(f.name for f in dataclasses.fields(GenOutput))


@dataclass(frozen=True)
class Generation:
    """One generated output as the library reads it: the engine's output, keyed, timed, or failed.

    ``seconds`` is this output's share of its expert group's generation time (by output tokens), kept with
    the stored output so that costs are the same whether a run generated it or found it in the store.
    ``error`` is set only on a stand-in for an output whose expert failed (never stored).
    """

    key: str
    tag: str
    output: GenOutput
    seconds: float = 0.0
    error: str | None = None

    @staticmethod
    def failure(key: str, message: str) -> Generation:
        """Stands in for an output whose expert failed (``failures="report"`` only; never stored)."""
        return Generation(key, "", GenOutput("", finish_reason="error"), 0.0, message)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def text(self) -> str:
        return self.output.text

    @property
    def prompt_tokens(self) -> int:
        return self.output.prompt_tokens

    @property
    def output_tokens(self) -> int:
        return self.output.output_tokens

    @property
    def finish_reason(self) -> str:
        return self.output.finish_reason

    @property
    def router(self) -> dict | None:
        """Routing statistics of an analyze request (DSMoE), None for any other."""
        return self.output.router

    def to_json(self) -> dict:
        """The stored line: key, tag, the output's fields (``router`` only where there is one), seconds."""
        record = {"key": self.key, "tag": self.tag, **self.output.as_record(), "seconds": self.seconds}
        if self.error is not None:
            record["error"] = self.error
        return record

    @staticmethod
    def from_json(data: dict) -> Generation:
        """The generation stored as ``data``; ValueError when it is not one (a damaged line)."""
        if not isinstance(data, dict) or not isinstance(data.get("key"), str) or "text" not in data:
            raise ValueError("not a stored generation (no key or no text)")
        output = GenOutput(**{name: data[name] for name in OUTPUT_FIELDS if name in data})
        seconds = data.get("seconds", 0.0)
        return Generation(data["key"], data.get("tag", ""), output, seconds, data.get("error"))


@dataclass(frozen=True)
class GenerationCounts:
    """What one generating call asked for and produced: requests, new generations, expert groups, tokens,
    and how many of its outputs the engine cut at ``max_tokens`` (``truncated``: their finish reason is
    ``"length"``; such an output has no answer unless it stated one before the cut)."""

    requests: int = 0
    generated: int = 0
    expert_groups: int = 0
    expert_groups_cached: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class StageRecord:
    """One stage's statistics (results.json ``stages``): cache key and path, cached or not, seconds, what
    it generated (None for a stage that generates nothing), the aggregator a config fixed (none selected)."""

    key: str | None = None
    cached: bool = False
    counts: GenerationCounts | None = None
    seconds: float = 0.0
    path: str | None = None
    fixed: str | None = None

    def to_json(self) -> dict:
        """The flat JSON results.json has always held: fields that apply only, the counts inline."""
        out: dict = {} if self.key is None else {"key": self.key}
        out["cached"] = self.cached
        if self.counts is not None:
            out.update(dataclasses.asdict(self.counts))
        out["seconds"] = self.seconds
        if self.path is not None:
            out["path"] = self.path
        if self.fixed is not None:
            out["fixed"] = self.fixed
        return out
