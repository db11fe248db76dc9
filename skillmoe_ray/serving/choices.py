"""A request's ``n`` replies: one aggregation each over the same experts' answers, merged into one outcome.

The first reply is the request itself; each other is a job of its own with its seed shifted, submitted with it
so
that all share one micro-batch (and so the experts' answers, which are cached by request key).
"""

from __future__ import annotations

from dataclasses import replace

from skillmoe_ray.serving.openai_api import Job
from skillmoe_ray.serving.router import Outcome


def choice_jobs(job: Job) -> list[Job]:
    """The jobs of a request's ``n`` replies: the first is the request itself, each other an aggregation of
    its own (the seed shifted) over the same experts' answers."""
    seed = job.sampling.seed or 0
    return [job] + [
        replace(job, request_id=f"{job.request_id}-{i}", n=1, sampling=replace(job.sampling, seed=seed + i))
        for i in range(1, job.n)
    ]


def merge(outcomes: list[Outcome]) -> Outcome:
    """One outcome of a request's ``n`` replies: the first failure, or the replies, their tokens summed."""
    failed = next((o for o in outcomes if o.status != 200), None)
    if failed or len(outcomes) == 1:
        return failed or outcomes[0]
    first = outcomes[0]
    usage = {k: sum(o.usage.get(k, 0) for o in outcomes) for k in ("prompt_tokens", "completion_tokens")}
    details = dict(first.skillmoe)
    if "usage" in details:
        aggregator = [o.skillmoe["usage"]["aggregator"] for o in outcomes]
        summed = {k: sum(a[k] for a in aggregator) for k in aggregator[0]}
        details["usage"] = {**details["usage"], "aggregator": summed}
    replies = [(o.content, o.finish_reason) for o in outcomes]
    return replace(first, usage=usage, skillmoe=details, replies=replies)
