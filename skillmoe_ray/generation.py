"""The generation service: cached stage results and cached generations, over any executor.

One :class:`GenerationService` serves the batch pipeline, the test-time method runner and the online
router alike. It answers (expert, request) pairs from the :class:`GenerationStore` and asks the executor
only for what the store lacks, grouped by expert, storing each group (chunk) as it finishes; it caches
whole stage results in the :class:`StageCache` under a hash of their inputs; and it keeps one record per
stage (seconds, requests, tokens), reported to ``on_stage`` as each stage ends (the live W&B history).

Its failure policy is fixed when it is made: ``failures="stop"`` (batch runs) lets a failed expert group
stop the run, which resumes from the store; ``failures="report"`` (online serving) answers the affected
requests with an error record and keeps going.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from skillmoe_ray.cache import GenerationStore, StageCache, set_aside
from skillmoe_ray.config import RunConfig
from skillmoe_ray.engines import model_fingerprint
from skillmoe_ray.engines.base import GenOutput, GenRequest
from skillmoe_ray.method.results import StageResult
from skillmoe_ray.scheduling.executor import FollowUp, SlotExecutor
from skillmoe_ray.scheduling.grouping import ExpertGroup, group_by_expert

log = logging.getLogger(__name__)
STAGE_VERSION = 2  # bump when a stage's output format or rule changes, to invalidate old entries
FAILURE_POLICIES = ("stop", "report")
Pair = tuple[str, GenRequest]
R = TypeVar("R", bound=StageResult)


def failed_record(key: str, message: str) -> dict:
    """Stands in for an output whose expert failed (``failures="report"`` only; never stored)."""
    return {"key": key, "tag": "", "text": "", "prompt_tokens": 0, "output_tokens": 0, "finish_reason": "error",
            "seconds": 0.0, "error": message}


def stage_row(name: str, record: dict, index: int, executor: SlotExecutor) -> dict:
    """What a finished stage adds to the live W&B history: its seconds, requests and tokens, and the
    expert activations and wall seconds of the run so far."""
    return {
        "stage": name, "stage_index": index, "stage_seconds": record.get("seconds", 0.0),
        "stage_cached": bool(record.get("cached")), "stage_requests": record.get("requests", 0),
        "stage_generated": record.get("generated", 0), "stage_prompt_tokens": record.get("prompt_tokens", 0),
        "stage_output_tokens": record.get("output_tokens", 0),
        "activations_so_far": sum(executor.activations.values()), "elapsed_seconds": round(executor.now(), 3),
    }


class GenerationService:
    """Cached generations and stage results for one configuration; the executor decides where experts run."""

    def __init__(self, cfg: RunConfig, executor: SlotExecutor, failures: str = "stop"):
        if failures not in FAILURE_POLICIES:
            raise ValueError(f"failures must be one of {FAILURE_POLICIES}, got {failures!r}")
        self.executor = executor
        self.failures = failures
        self.cache = StageCache(cfg.cache_dir)
        self.store = GenerationStore(cfg.cache_dir)
        self.fingerprints = {name: model_fingerprint(spec, cfg.engine) for name, spec in cfg.pool.items()}
        self.stages: dict[str, dict] = {}  # stage name -> its record (results.json "stages")
        # Called with a stage's row (stage_row) as each stage ends: the live W&B run's history
        self.on_stage: Callable[[dict], None] | None = None
        self.stages_ended = 0

    def keys(self, pairs: Sequence[Pair]) -> list[str]:
        """The store keys of ``pairs`` (a request's key on its expert's model)."""
        return [request.key(self.fingerprints[expert]) for expert, request in pairs]

    def lookup(self, expert: str, request: GenRequest) -> dict | None:
        """The stored output of ``request`` on ``expert``, if it was generated already."""
        fp = self.fingerprints[expert]
        key = request.key(fp)
        return self.store.lookup(fp, [key]).get(key)

    def end_stage(self, name: str, record: dict) -> None:
        """Record a finished stage and report it to ``on_stage``."""
        self.stages[name] = record
        self.stages_ended += 1
        if self.on_stage is not None:
            self.on_stage(stage_row(name, record, self.stages_ended, self.executor))

    def cached_stage(self, name: str, inputs: Any, compute: Callable[[dict], R], result_type: type[R]) -> R:
        """The cached result of stage ``name`` for ``inputs``; computed (``compute(record)``) and stored if absent.

        A stored entry that does not read back as ``result_type`` is damaged: set aside and computed again.
        """
        key = self.cache.key(name, [STAGE_VERSION, inputs])
        start = time.perf_counter()
        record = {"key": key, "cached": True}
        self.stages[name] = record
        result = self._read_stage(name, key, result_type)
        if result is None:
            record["cached"] = False
            log.info("stage %s: running", name)
            result = compute(record)
            self.cache.put(name, key, result.to_json())
        else:
            log.info("stage %s: cached (%s)", name, key)
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["path"] = str(self.cache.path(name, key))
        self.end_stage(name, record)
        return result

    def _read_stage(self, name: str, key: str, result_type: type[R]) -> R | None:
        stored = self.cache.get(name, key)
        if stored is None:
            return None
        try:
            return result_type.from_json(stored)
        except (ValueError, TypeError) as exc:
            set_aside(self.cache.path(name, key), f"not a {result_type.__name__}: {exc}")
            return None

    def phase(self, stage: str, pairs: list[Pair], next_experts: Iterable[str],
              followup: FollowUp | None = None, later: Iterable[str] | None = None) -> list[dict]:
        """A generating phase recorded as its own stage (test-time phases, online batches)."""
        start = time.perf_counter()
        record: dict = {}
        outputs = self.generate(stage, pairs, record, next_experts, followup, later)
        record.update(key=self.cache.key(stage, self.keys(pairs)), cached=record["generated"] == 0,
                      seconds=round(time.perf_counter() - start, 3))
        self.end_stage(stage, record)
        return outputs

    def generate(self, stage: str, pairs: Sequence[Pair], record: dict, next_experts: Iterable[str] = (),
                 followup: FollowUp | None = None, later: Iterable[str] | None = None) -> list[dict]:
        """Outputs for ``pairs`` (aligned), generating only what the store does not hold yet.

        ``record`` (the stage's) gets the request, generation and token counts.
        """
        keys = self.keys(pairs)
        found = self._stored(pairs, keys)
        missing: dict[str, Pair] = {}
        for pair, key in zip(pairs, keys):
            if key not in found:
                missing.setdefault(key, pair)
        groups = group_by_expert(missing.values())
        experts = {e for e, _ in pairs}
        record.update(requests=len(pairs), generated=len(missing), expert_groups=len(experts),
                      expert_groups_cached=len(experts) - len(groups))
        if groups:
            found.update(self._run(stage, groups, next_experts, followup, later))
        outputs = [found[k] for k in keys]
        record["prompt_tokens"] = sum(o["prompt_tokens"] for o in outputs)
        record["output_tokens"] = sum(o["output_tokens"] for o in outputs)
        return outputs

    def _stored(self, pairs: Sequence[Pair], keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for expert in dict.fromkeys(e for e, _ in pairs):
            wanted = [k for (e, _), k in zip(pairs, keys) if e == expert]
            found.update(self.store.lookup(self.fingerprints[expert], wanted))
        return found

    def _run(self, stage: str, groups: list[ExpertGroup], next_experts: Iterable[str],
             followup: FollowUp | None, later: Iterable[str] | None) -> dict[str, dict]:
        """Generate ``groups`` on the executor, storing each as it finishes; their records by key."""
        produced: dict[str, dict] = {}
        failed: dict[str, str] = {}

        def on_group_done(group: ExpertGroup, outputs: list[GenOutput], seconds: float) -> None:
            rows = self._rows(group, outputs, seconds)
            self.store.save(self.fingerprints[group.expert], rows)
            produced.update({row["key"]: row for row in rows})

        def on_group_error(group: ExpertGroup, exc: Exception) -> None:
            fp = self.fingerprints[group.expert]
            failed.update({req.key(fp): f"expert {group.expert} failed: {exc}" for req in group.requests})

        handler = on_group_error if self.failures == "report" else None
        self.executor.run_stage(stage, groups, next_experts, on_group_done, handler, followup, later)
        produced.update({key: failed_record(key, message) for key, message in failed.items()})
        return produced

    def _rows(self, group: ExpertGroup, outputs: list[GenOutput], seconds: float) -> list[dict]:
        """Store rows of a finished group: each output with its share of the group's seconds (by tokens)."""
        fp = self.fingerprints[group.expert]
        tokens = sum(out.output_tokens for out in outputs) or len(outputs)
        return [{"key": req.key(fp), "tag": req.tag, **out.as_record(),
                 "seconds": round(seconds * (out.output_tokens or 1) / tokens, 6)}
                for req, out in zip(group.requests, outputs)]
