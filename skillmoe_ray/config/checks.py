"""The cross-field rules of a run's configuration, which types alone do not express.

:func:`skillmoe_ray.config.load_config` calls :func:`validate` once, at the boundary; every error names
the bad key and, where the choice is from a set, the valid choices.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from skillmoe_ray.config.serving import check_topology
from skillmoe_ray.errors import ConfigError
from skillmoe_ray.registry import DATA_SOURCES, ENGINES, METHODS, RECRUIT_POLICIES

if TYPE_CHECKING:
    from skillmoe_ray.config import RunConfig, ServeConfig

MODES = ("run", "compare", "serve", "plan")
DEACTIVATE_POLICIES = ("auto", "sleep", "unload")
RESIDENCY_POLICIES = ("budget", "single")
STEERING_SCORES = ("share",
                   "paper")  # routing/saliency shares, or DSMoE's Eq. 8 (specific minus common tokens)
STEERING_SELECTIONS = ("per_layer", "global")  # the best per layer, or DSMoE's global top fraction
TRACKING_MODES = ("auto", "online", "offline", "disabled")
REPEATED_SKILLS = ("once", "count")
ROUTER_COMBINE = ("vote", "aggregator")  # the rival routers' experts: majority vote, or the aggregator
PROMPT_SETS = ("project",
               "paper")  # the project's prompts, or the paper protocol's (skillmoe_ray.method.paper_prompts)


def _require_expert(cfg: RunConfig, name: str | None, key: str) -> None:
    if name is not None and name not in cfg.pool:
        raise ConfigError(
            f"{key}: unknown model {name!r}; models in the pool: {', '.join(sorted(cfg.pool))}"
        )


def unknown_choice(key: str, value: object, choices: tuple[str, ...], what: str = "mode") -> ConfigError:
    """``mode=comapre``: the error naming the key, the valid choices and the closest one ("did you mean")."""
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {key}={close[0]}?)" if close else ""
    return ConfigError(f"{key}: unknown {what} {value!r}; valid {what}s: {', '.join(choices)}{hint}")


def validate_names(cfg: RunConfig) -> None:
    """Every pluggable part the config names is registered (a "module:Class" engine is the user's own)."""
    ENGINES.get(cfg.engine.name)
    RECRUIT_POLICIES.get(cfg.recruit.policy)
    METHODS.check(cfg.compare.methods)
    for split in ("val", "test"):
        DATA_SOURCES.get(getattr(cfg.data, split).source, f"data.{split}.source")


def validate(cfg: RunConfig) -> None:
    """Check the cross-field rules that types alone do not express."""
    if cfg.mode not in MODES:
        raise unknown_choice("mode", cfg.mode, MODES)
    if cfg.tracking.mode not in TRACKING_MODES:
        raise unknown_choice("tracking.mode", cfg.tracking.mode, TRACKING_MODES)
    if cfg.recruit.k < 1:
        raise ConfigError(f"recruit.k must be >= 1, got {cfg.recruit.k}")
    validate_names(cfg)
    validate_recruit_and_skills(cfg)
    validate_routers(cfg)
    _check_serve(cfg.serve)
    check_topology(cfg.serve, cfg.pool)
    validate_resources(cfg)
    if not cfg.experts:
        raise ConfigError("the pool has no experts: set expert: true on at least one of pool.models")
    validate_steering(cfg)
    validate_parallelism(cfg)
    validate_engine_kwargs(cfg)
    _require_expert(cfg, cfg.skills.keyword_model, "skills.keyword_model")
    _require_expert(cfg, cfg.aggregator.fixed, "aggregator.fixed")
    for name in cfg.aggregator.candidates or ():
        _require_expert(cfg, name, "aggregator.candidates")


def validate_recruit_and_skills(cfg: RunConfig) -> None:
    """Recruitment's budget and temperature, the prompt set, and skill annotation's voting."""
    if cfg.recruit.budget.per_instance <= 0 or cfg.recruit.budget.k_min < 1:
        raise ConfigError("recruit.budget.per_instance must be > 0 and recruit.budget.k_min >= 1")
    if cfg.recruit.rare_expert_share is not None and not 0 <= cfg.recruit.rare_expert_share < 1:
        raise ConfigError(
            f"recruit.rare_expert_share must lie in [0, 1) or be null, got {cfg.recruit.rare_expert_share}"
        )
    cold = cfg.recruit.cold_factor
    if not 0 < cold <= 1:
        raise ConfigError(f"recruit.cold_factor must lie in (0, 1] (1.0: off, the paper's rule), got {cold}")
    if cfg.recruit.competence_temperature <= 0:
        raise ConfigError("recruit.competence_temperature must be > 0")
    if cfg.prompts not in PROMPT_SETS:
        raise ConfigError(f"prompts: unknown prompt set {cfg.prompts!r}; valid: {', '.join(PROMPT_SETS)}")
    if cfg.skills.repeated not in REPEATED_SKILLS:
        raise ConfigError(
            f"skills.repeated: unknown rule {cfg.skills.repeated!r}; valid: {', '.join(REPEATED_SKILLS)}"
        )
    if cfg.skills.samples < 1 or not 1 <= cfg.skills.min_votes <= cfg.skills.samples:
        raise ConfigError(
            f"skills.min_votes must lie in [1, skills.samples={cfg.skills.samples}], "
            f"got {cfg.skills.min_votes}"
        )


def validate_routers(cfg: RunConfig) -> None:
    """The rival routers' settings (recruit.avengers, recruit.knn): sizes of at least 1, a known combine."""
    sizes = {"recruit.avengers.n_clusters": cfg.recruit.avengers.n_clusters,
             "recruit.knn.n_neighbors": cfg.recruit.knn.n_neighbors}
    for key, value in sizes.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    for key, section in (("recruit.avengers", cfg.recruit.avengers), ("recruit.knn", cfg.recruit.knn)):
        if section.combine not in ROUTER_COMBINE:
            raise unknown_choice(f"{key}.combine", section.combine, ROUTER_COMBINE, "rule")


def check_router_sizes(cfg: RunConfig, n_val: int) -> None:
    """A rival router the run uses (its policy, a compare method, or a served model) needs at least
    ``n_clusters`` / ``n_neighbors`` validation questions: refused before any model loads."""
    used = {cfg.recruit.policy, *(cfg.compare.methods if cfg.mode == "compare" else ())}
    sizes = (("avengers", "recruit.avengers.n_clusters", cfg.recruit.avengers.n_clusters),
             ("knn", "recruit.knn.n_neighbors", cfg.recruit.knn.n_neighbors))
    for name, key, value in sizes:
        if (name in used or cfg.mode == "serve") and value > n_val:
            raise ConfigError(f"{key}={value} exceeds the {n_val} validation questions; "
                              f"set {key} to at most {n_val}")


def validate_resources(cfg: RunConfig) -> None:
    """GPU slots and memory, and the scheduler's bounds."""
    if cfg.resources.gpus < 1:
        raise ConfigError(f"resources.gpus must be >= 1, got {cfg.resources.gpus}")
    if cfg.resources.gpu_memory_gb is not None and cfg.resources.gpu_memory_gb <= 0:
        raise ConfigError(f"resources.gpu_memory_gb must be > 0 or null, got {cfg.resources.gpu_memory_gb}")
    sc = cfg.scheduler
    if sc.max_replicas < 1 or sc.replica_min_requests < 1:
        raise ConfigError(
            f"scheduler.max_replicas and scheduler.replica_min_requests must be >= 1, got "
            f"{sc.max_replicas} and {sc.replica_min_requests}"
        )
    if sc.max_retries < 0:
        raise ConfigError(f"scheduler.max_retries must be >= 0, got {sc.max_retries}")
    if sc.chunk_requests < 0:
        raise ConfigError(
            f"scheduler.chunk_requests must be >= 0 (0: a whole group at once), got {sc.chunk_requests}"
        )
    if not 0 < sc.progress_every_s <= 3600:
        raise ConfigError(
            f"scheduler.progress_every_s must lie in (0, 3600] seconds, got {sc.progress_every_s}"
        )
    if sc.memory_headroom < 1:
        raise ConfigError(f"scheduler.memory_headroom must be >= 1, got {sc.memory_headroom}")
    if sc.deactivate not in DEACTIVATE_POLICIES:
        raise ConfigError(
            f"scheduler.deactivate: unknown policy {sc.deactivate!r}; valid: {', '.join(DEACTIVATE_POLICIES)}"
        )
    if sc.residency not in RESIDENCY_POLICIES:
        raise ConfigError(
            f"scheduler.residency: unknown policy {sc.residency!r}; valid: {', '.join(RESIDENCY_POLICIES)}"
        )


# engine arguments that spread one model over several GPUs (a slot is one GPU)
PARALLEL_ARGS = ("tensor_parallel_size", "pipeline_parallel_size")


def validate_parallelism(cfg: RunConfig) -> None:
    """Refuse a model spread over several GPUs (an expert's actor holds a share of one): it would fail mid-run
    ("World size (2) is larger than the number of available GPUs (1)"). Such a model is served apart."""
    if ENGINES.get(cfg.engine.name).remote:
        return
    for name, spec in cfg.pool.items():
        given = {f"engine_kwargs.{arg}": cfg.engine.kwargs_for(spec).get(arg, 1) for arg in PARALLEL_ARGS}
        for key, size in {"tensor_parallel_size": spec.tensor_parallel_size, **given}.items():
            if isinstance(size, int) and size > 1:
                flag = key.rsplit(".", 1)[-1].replace("_", "-")
                serve = f"vllm serve {spec.path} --{flag} {size}"
                raise ConfigError(
                    f"pool.models.{name}.{key}={size}: multi-GPU experts are refused (a slot "
                    f"is one GPU); serve the model apart ({serve}) and run with engine=openai"
                )


def validate_engine_kwargs(cfg: RunConfig) -> None:
    """Check ``engine.kwargs`` and every model's ``engine_kwargs`` against the chosen engine (no model loads).

    The engine class comes from the registry by name; nothing is imported when no model has any, so a
    run without pass-through arguments pays nothing.
    """
    where = {"engine.kwargs": cfg.engine.kwargs}
    where.update({f"pool.models.{name}.engine_kwargs": spec.engine_kwargs for name, spec in cfg.pool.items()})
    where = {key: kwargs for key, kwargs in where.items() if kwargs}
    if not where:
        return
    cls = ENGINES.load(cfg.engine.name)
    for key, kwargs in where.items():
        bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
        if bad:
            raise ConfigError(f"{key}: argument names must be identifiers, got {bad[0]!r}")
        cls.check_kwargs(kwargs, key)


def validate_steering(cfg: RunConfig) -> None:
    """Steering needs MoE experts, an engine that reaches their routers, and sane settings."""
    st = cfg.steering
    if not st.enabled:
        return
    if not ENGINES.get(cfg.engine.name).steerable:
        raise ConfigError(
            f"steering.enabled needs an engine that reaches the model's routers "
            f"({', '.join(ENGINES.with_capability('steerable'))}); got engine={cfg.engine.name}"
        )
    if not any(spec.moe for spec in cfg.experts):
        raise ConfigError(
            "steering.enabled: no expert of the pool is marked moe: true (pool.models.<name>.moe)"
        )
    if st.score not in STEERING_SCORES or st.selection not in STEERING_SELECTIONS:
        raise ConfigError(
            f"steering.score must be one of {', '.join(STEERING_SCORES)} and steering.selection one of "
            f"{', '.join(STEERING_SELECTIONS)}; got {st.score!r}, {st.selection!r}"
        )
    if st.saliency_percentile not in range(10, 100, 10) or not 0 < st.top_fraction <= 1:
        raise ConfigError(
            f"steering.saliency_percentile must be one of 10, 20, ..., 90 and steering.top_fraction in "
            f"(0, 1]; got {st.saliency_percentile}, {st.top_fraction}"
        )
    if st.alpha < 0 or st.experts_per_layer < 1 or not 0 <= st.count_weight <= 1:
        raise ConfigError(
            f"steering: alpha must be >= 0, experts_per_layer >= 1 and count_weight in [0, 1]; got "
            f"{st.alpha}, {st.experts_per_layer}, {st.count_weight}"
        )


def _check_serve(serve: ServeConfig) -> None:
    """The service's bounds: Serve's back-pressure limits, the batch size, the port, the timeout."""
    counts = {
        "max_batch": serve.max_batch,
        "max_ongoing_requests": serve.max_ongoing_requests,
        "max_queued_requests": serve.max_queued_requests,
        "max_n": serve.max_n,
    }
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f"serve.{name} must be >= 1, got {value}")
    if not 0 < serve.port < 65536:
        raise ConfigError(f"serve.port must be in 1..65535, got {serve.port}")
    if serve.max_cold_wait_ms < 0:
        raise ConfigError(
            f"serve.max_cold_wait_ms must be >= 0 (0: never wait to share a load), "
            f"got {serve.max_cold_wait_ms}"
        )
    if serve.request_timeout_s <= 0:
        raise ConfigError(f"serve.request_timeout_s must be > 0, got {serve.request_timeout_s}")
