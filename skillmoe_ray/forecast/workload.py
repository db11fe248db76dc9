"""Workloads for the simulator: estimated from a configuration, or read back from a finished run.

:func:`estimate_stages` predicts each stage's work per expert before anything runs: request counts
follow the pipeline's rules (5 keyword samples per question, every expert on every validation
question, k recruits per test question spread over the experts by their expected share), token
counts come from question lengths and a fraction of each model's reply budget.
:func:`stages_from_run` rebuilds the same shape from a run's timeline, for checking the cost model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from skillmoe_ray.config import RunConfig
from skillmoe_ray.forecast.simulator import StageWork, Work

TEMPLATE_TOKENS = 80  # system prompt and instructions around a question
BACKWARD_FACTOR = 3  # DSMoE analysis: a forward and a backward pass over the prompt, ~3 forward passes


def _replies(cfg: RunConfig, model: str, budget: int | None) -> int:
    """Expected reply tokens of ``model``: a fraction of its (or the stage's) token budget."""
    limit = min(budget, cfg.pool[model].max_tokens) if budget else cfg.pool[model].max_tokens
    return int(limit * cfg.scheduler.cost.output_fraction)


def _work(expert: str, requests: float, prompt: float, reply: float) -> Work:
    n = int(round(requests))
    return Work(expert, n, int(n * prompt), int(n * reply))


def estimate_stages(cfg: RunConfig, n_val: int, n_test: int, question_tokens: float,
                    recruit_share: Mapping[str, float] | None = None) -> list[StageWork]:
    """The batch pipeline's stages as expected work, in the order the pipeline runs them.

    ``recruit_share`` is each expert's expected share of the recruited slots (uniform when None).
    """
    experts = [s.name for s in cfg.experts]
    share = recruit_share or {e: 1 / len(experts) for e in experts}
    q = question_tokens + TEMPLATE_TOKENS
    kw = cfg.skills.keyword_model
    candidates = [] if cfg.aggregator.fixed else cfg.aggregator_candidates()
    aggregator = cfg.aggregator.fixed or candidates[0]
    answer = {e: _replies(cfg, e, cfg.inference.max_tokens) for e in experts}
    mean_answer = sum(answer.values()) / len(answer)
    k = cfg.recruit.k
    moe = [s.name for s in cfg.experts if s.moe] if cfg.steering.enabled else []
    steering = [StageWork("steering",
                          tuple(_work(e, n_val, BACKWARD_FACTOR * q, 0) for e in moe))] if moe else []
    return [
        StageWork("skills",
                  (_work(kw, cfg.skills.samples * (n_val + n_test), q,
                         _replies(cfg, kw, cfg.skills.max_tokens)),),
                  tuple(experts)),
        StageWork("profiles",
                  tuple(_work(e, n_val, q, _replies(cfg, e, cfg.profiles.max_tokens)) for e in experts),
                  tuple(candidates)),
        StageWork("mapping", cpu_seconds=cfg.scheduler.cost.cpu_stage_s),
        StageWork("aggregator_selection", tuple(
            _work(c, n_val, q + 3 * mean_answer,
                  _replies(cfg, c, cfg.aggregator.max_tokens)) for c in candidates),
            tuple(experts)),
        *steering,
        StageWork("inference",
                  tuple(_work(e, k * n_test * share[e], q, answer[e]) for e in experts if share[e] > 0),
                  (aggregator,), later=(aggregator,)),
        StageWork("aggregation",
                  (_work(aggregator, n_test, q + k * mean_answer,
                         _replies(cfg, aggregator, cfg.aggregator.max_tokens)),),
                  later=()),
    ]


def is_test_time_phase(stage: str) -> bool:
    """Stages that run after recruitment, when the experts of every later stage are known."""
    return stage in ("inference", "aggregation") or stage.startswith("moa_layer_")


def stages_from_run(results: dict) -> list[StageWork]:
    """The work a finished run did, stage by stage, with its driver-side seconds.

    A stage's driver-side seconds are its wall time minus the span of its expert groups (answer
    extraction, embeddings, recruitment, cache I/O); non-generating stages are driver time only.
    """
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for entry in results["timeline"]:
        by_stage[entry["stage"]].append(entry)
    stages = []
    names = list(results["stages"])
    for i, name in enumerate(names):
        entries = by_stage.get(name, [])
        busy = (max(e["end"] for e in entries) - min(e["start"] for e in entries)) if entries else 0.0
        works = tuple(Work(e["expert"], e["requests"], e.get("prompt_tokens", 0), e.get("output_tokens", 0))
                      for e in entries)
        following = by_stage.get(names[i + 1], []) if i + 1 < len(names) else []
        later = tuple(sorted({e["expert"] for n in names[i + 1 :] for e in by_stage.get(n, [])}))
        stages.append(StageWork(name, works, tuple(e["expert"] for e in following),
                                max(0.0, results["stages"][name]["seconds"] - busy),
                                later if is_test_time_phase(name) else None))
    return stages


def plan_sizes(cfg: RunConfig, val: Sequence | None, test: Sequence | None) -> tuple[int, int, float]:
    """(validation size, test size, mean question tokens): from loaded data, else the configured sizes."""
    if val is not None and test is not None:
        texts = [inst.question for inst in [*val, *test]]
        return len(val), len(test), sum(len(t) for t in texts) / max(len(texts), 1) / 4
    sizes = []
    for where, spec in (("data.val", cfg.data.val), ("data.test", cfg.data.test)):
        size = spec.sample or spec.size
        if size is None:
            from skillmoe_ray.errors import ConfigError

            raise ConfigError(f"mode=plan needs {where}.size (or {where}.sample) when the data is not loaded")
        sizes.append(min(size, spec.size) if spec.size else size)
    return sizes[0], sizes[1], cfg.scheduler.cost.prompt_tokens
