"""The generation service: cached stage results and cached generations, over any executor.

One :class:`GenerationService` serves the batch pipeline, the test-time method runner and the online
router alike. It answers (expert, request) pairs from the :class:`GenerationStore` and asks the executor
only for what the store lacks, grouped by expert, storing each group (chunk) as it finishes; it caches
whole stage results in the :class:`StageCache` under a hash of their inputs; and it keeps one record per
stage (:class:`~skillmoe_ray.records.StageRecord`: seconds, requests, tokens), reported to ``on_stage``
(given when it is made) as each stage ends (the live W&B history). What it answers is one
:class:`~skillmoe_ray.records.Generation` per pair, made here once from the engine's output.

Its failure policy is fixed when it is made: ``failures="stop"`` (batch runs) lets a failed expert group
stop the run, which resumes from the store; ``failures="report"`` (online serving) answers the affected
requests with a failed :class:`Generation` (its ``error`` set) and keeps going.
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
from skillmoe_ray.errors import one_line, storage_error
from skillmoe_ray.method.results import StageResult
from skillmoe_ray.records import Generation, GenerationCounts, StageRecord
from skillmoe_ray.scheduling.executor import FollowUp, SlotExecutor
from skillmoe_ray.scheduling.grouping import ExpertGroup, group_by_expert

log = logging.getLogger(__name__)
STAGE_VERSION = 2  # bump when a stage's output format or rule changes, to invalidate old entries
FAILURE_POLICIES = ("stop", "report")
Pair = tuple[str, GenRequest]
R = TypeVar("R", bound=StageResult)


def stage_row(name: str, record: StageRecord, index: int, executor: SlotExecutor) -> dict:
    """What a finished stage adds to the live W&B history: its seconds, requests and tokens, and the
    expert activations and wall seconds of the run so far."""
    counts = record.counts or GenerationCounts()
    return {
        "stage": name, "stage_index": index, "stage_seconds": record.seconds,
        "stage_cached": record.cached, "stage_requests": counts.requests,
        "stage_generated": counts.generated, "stage_prompt_tokens": counts.prompt_tokens,
        "stage_output_tokens": counts.output_tokens,
        "activations_so_far": sum(executor.activations.values()), "elapsed_seconds": round(executor.now(), 3),
    }


def counted(pairs: Sequence[Pair], generated: int, groups: int,
            outputs: Sequence[Generation]) -> GenerationCounts:
    """The counts of one generating call: ``groups`` of its experts' groups had to generate."""
    experts = len({e for e, _ in pairs})
    return GenerationCounts(len(pairs), generated, experts, experts - groups,
                            sum(o.prompt_tokens for o in outputs), sum(o.output_tokens for o in outputs),
                            sum(o.finish_reason == "length" for o in outputs))


class GenerationService:
    """Cached generations and stage results for one configuration; the executor decides where experts run."""

    def __init__(self, cfg: RunConfig, executor: SlotExecutor, failures: str = "stop",
                 on_stage: Callable[[dict], None] | None = None):
        """``on_stage`` is called with a stage's row (:func:`stage_row`) as each stage ends: the live W&B
        run's history."""
        if failures not in FAILURE_POLICIES:
            raise ValueError(f"failures must be one of {FAILURE_POLICIES}, got {failures!r}")
        self.executor = executor
        self.failures = failures
        self.cache = StageCache(cfg.cache_dir)
        self.store = GenerationStore(cfg.cache_dir)
        self.fingerprints = {name: model_fingerprint(spec, cfg.engine) for name, spec in cfg.pool.items()}
        self.stages: dict[str, StageRecord] = {}  # stage name -> its record (results.json "stages")
        self.on_stage = on_stage
        self.stages_ended = 0
        self.store_failures = 0  # chunks generated but not stored (serving: the cache write failed)

    def keys(self, pairs: Sequence[Pair]) -> list[str]:
        """The store keys of ``pairs`` (a request's key on its expert's model)."""
        return [request.key(self.fingerprints[expert]) for expert, request in pairs]

    def lookup(self, expert: str, request: GenRequest) -> Generation | None:
        """The stored output of ``request`` on ``expert``, if it was generated already."""
        fp = self.fingerprints[expert]
        key = request.key(fp)
        return self.store.lookup(fp, [key]).get(key)

    def resident_experts(self) -> list[str]:
        """The experts the executor holds loaded now (online serving's cold-start estimate)."""
        return self.executor.resident_experts()

    def warm_up(self, models: Sequence[str]) -> list[str]:
        """Load ``models`` in order while the slots' budget holds them (serving, before it is ready); the
        models resident afterwards."""
        return self.executor.warm(models)

    def rank_residents(self, rank: dict[str, float]) -> None:
        """How much each model is worth keeping resident (online: recent recruitment); evictions go lowest
        first, after the plan's own needs (:func:`~skillmoe_ray.scheduling.residency.evictions`)."""
        self.executor.slots.rank = dict(rank)

    def end_stage(self, name: str, record: StageRecord) -> None:
        """Record a finished stage and report it to ``on_stage``."""
        self.stages[name] = record
        self.stages_ended += 1
        if self.on_stage is not None:
            self.on_stage(stage_row(name, record, self.stages_ended, self.executor))

    def cached_stage(self, name: str, inputs: Any, compute: Callable[[], tuple[R, GenerationCounts | None]],
                     result_type: type[R]) -> R:
        """The cached result of stage ``name`` for ``inputs``; computed and stored if absent.

        ``compute()`` returns the result and what it generated (None for a stage that generates nothing).
        A stored entry that does not read back as ``result_type`` is damaged: set aside and computed again.
        """
        key = self.cache.key(name, [STAGE_VERSION, inputs])
        start = time.perf_counter()
        result = self._read_stage(name, key, result_type)
        cached, counts = result is not None, None
        if result is None:
            log.info("stage %s: running", name)
            result, counts = compute()
            try:
                self.cache.put(name, key, result.to_json())
            except OSError as exc:
                raise storage_error(exc, f"stage {name}'s result", str(self.cache.path(name, key))) from exc
        else:
            log.info("stage %s: cached (%s)", name, key)
        seconds = round(time.perf_counter() - start, 3)
        self.end_stage(name, StageRecord(key, cached, counts, seconds, str(self.cache.path(name, key))))
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
              followup: FollowUp | None = None, later: Iterable[str] | None = None) -> list[Generation]:
        """A generating phase recorded as its own stage (test-time phases, online batches)."""
        start = time.perf_counter()
        outputs, counts = self.generate(stage, pairs, next_experts, followup, later)
        key = self.cache.key(stage, self.keys(pairs))
        seconds = round(time.perf_counter() - start, 3)
        self.end_stage(stage, StageRecord(key, counts.generated == 0, counts, seconds))
        return outputs

    def generate(self, stage: str, pairs: Sequence[Pair], next_experts: Iterable[str] = (),
                 followup: FollowUp | None = None,
                 later: Iterable[str] | None = None) -> tuple[list[Generation], GenerationCounts]:
        """Outputs for ``pairs`` (aligned), generating only what the store does not hold yet, and the
        counts of requests, generations and tokens (the stage's statistics)."""
        keys = self.keys(pairs)
        found = self._stored(pairs, keys)
        missing: dict[str, Pair] = {}
        for pair, key in zip(pairs, keys):
            if key not in found:
                missing.setdefault(key, pair)
        groups = group_by_expert(missing.values())
        if groups:
            found.update(self._run(stage, groups, next_experts, followup, later))
        outputs = [found[k] for k in keys]
        return outputs, counted(pairs, len(missing), len(groups), outputs)

    def _stored(self, pairs: Sequence[Pair], keys: list[str]) -> dict[str, Generation]:
        found: dict[str, Generation] = {}
        for expert in dict.fromkeys(e for e, _ in pairs):
            wanted = [k for (e, _), k in zip(pairs, keys) if e == expert]
            found.update(self.store.lookup(self.fingerprints[expert], wanted))
        return found

    def _run(self, stage: str, groups: list[ExpertGroup], next_experts: Iterable[str],
             followup: FollowUp | None, later: Iterable[str] | None) -> dict[str, Generation]:
        """Generate ``groups`` on the executor, storing each as it finishes; their generations by key."""
        produced: dict[str, Generation] = {}
        failed: dict[str, str] = {}

        def on_group_done(group: ExpertGroup, outputs: list[GenOutput], seconds: float) -> None:
            made = self._generations(group, outputs, seconds)
            produced.update({g.key: g for g in made})
            self._save(group.expert, made)

        def on_group_error(group: ExpertGroup, exc: Exception) -> None:
            fp = self.fingerprints[group.expert]
            failed.update({req.key(fp): f"expert {group.expert} failed: {one_line(exc)}"
                           for req in group.requests})

        handler = on_group_error if self.failures == "report" else None
        self.executor.run_stage(stage, groups, next_experts, on_group_done, handler, followup, later)
        produced.update({key: Generation.failure(key, message) for key, message in failed.items()})
        return produced

    def _save(self, expert: str, made: list[Generation]) -> None:
        """Store a finished chunk. A storage failure is the cache's, never the expert's: a batch run stops
        with a :class:`StorageError` naming the path (no retry, no reload); serving keeps the replies it
        generated (the cache is an optimization), logs a warning and counts it (``store_failures``)."""
        fp = self.fingerprints[expert]
        try:
            self.store.save(fp, made)
        except OSError as exc:
            error = storage_error(exc, "the generation cache", str(self.store.root / fp))
            if self.failures == "stop":
                raise error from exc
            self.store_failures += 1
            log.warning("%s: %d reply(ies) of expert %s answered but not cached", error, len(made), expert)

    def _generations(self, group: ExpertGroup, outputs: list[GenOutput], seconds: float) -> list[Generation]:
        """A finished group's generations: each output with its share of the group's seconds (by tokens)."""
        fp = self.fingerprints[group.expert]
        tokens = sum(out.output_tokens for out in outputs) or len(outputs)
        return [
            Generation(req.key(fp), req.tag, out, round(seconds * (out.output_tokens or 1) / tokens, 6))
            for req, out in zip(group.requests, outputs)
        ]
