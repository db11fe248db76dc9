"""Settings of the HTTP service (``serve``): its bounds, and its topology on Ray Serve.

``serve.topology`` says how the pool is deployed: ``single`` (one answering replica holds every model and
time-shares the GPU slots, the right choice on one GPU) or ``per_expert`` (each model the router needs, the
keyword model, the experts and the aggregator, is a Ray Serve deployment of its own, placed, replicated and
autoscaled by Serve). Each model's deployment options are ``serve.deployments.default`` overridden key by
key by ``serve.deployments.<model>``; the answering (routing) deployment's are ``serve.router``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from skillmoe_ray.config.structured import build
from skillmoe_ray.errors import ConfigError, one_line

TOPOLOGIES = ("single", "per_expert")
# The entry of serve.deployments every model's deployment starts from
DEFAULT_DEPLOYMENT = "default"


@dataclass(frozen=True)
class DeploymentOptions:
    """Ray Serve options of one deployment: a fixed ``num_replicas``, or ``autoscaling_config`` (Serve's own
    keys: min_replicas, max_replicas, target_ongoing_requests, upscale_delay_s, ...); ``ray_actor_options``
    of each replica (num_gpus, num_cpus, resources: a custom resource pins replicas to the nodes that have
    it); ``max_ongoing_requests``: calls one replica takes at a time (each a router's whole micro-batch)."""

    num_replicas: int = 1
    autoscaling_config: dict | None = None
    ray_actor_options: dict | None = None
    max_ongoing_requests: int = 4


@dataclass(frozen=True)
class ServeConfig:
    """The HTTP service: address, micro-batching window, Serve's back-pressure bounds and timeouts, the
    replies a request may ask for, what an exposed service needs (API keys, CORS origins), and the topology
    with each deployment's options."""

    host: str = "127.0.0.1"
    port: int = 8000
    window_ms: float = 50.0
    max_batch: int = 64
    max_cold_wait_ms: float = 200.0
    max_ongoing_requests: int = 128
    max_queued_requests: int = 256
    request_timeout_s: float = 600.0
    max_body_bytes: int = 1_000_000
    unhealthy_after: int = 20
    max_n: int = 4
    # repr=False: a printed config does not show the keys ($SKILLMOE_API_KEYS keeps them out of config files)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    cors_origins: tuple[str, ...] = ()
    topology: str = "single"
    deployments: dict = field(default_factory=dict)
    router: DeploymentOptions = field(default_factory=DeploymentOptions)


def deployment_options(serve: ServeConfig, model: str) -> DeploymentOptions:
    """``model``'s deployment options: ``serve.deployments.default`` with the model's own entry over it."""
    merged = {**(serve.deployments.get(DEFAULT_DEPLOYMENT) or {}), **(serve.deployments.get(model) or {})}
    where = f"serve.deployments.{model if model in serve.deployments else DEFAULT_DEPLOYMENT}"
    return build(DeploymentOptions, merged, where)


def check_topology(serve: ServeConfig, models: Iterable[str]) -> None:
    """The topology is known; every ``serve.deployments`` entry is ``default`` or a pool model, with valid
    options (checked before any model loads)."""
    if serve.topology not in TOPOLOGIES:
        raise ConfigError(f"serve.topology must be one of {', '.join(TOPOLOGIES)}, got {serve.topology!r}")
    names = set(models)
    for name, entry in serve.deployments.items():
        if name != DEFAULT_DEPLOYMENT and name not in names:
            raise ConfigError(
                f"serve.deployments.{name}: not a pool model; the entries are {DEFAULT_DEPLOYMENT!r} "
                f"or one of pool.models: {', '.join(sorted(names))}"
            )
        if entry is not None and not isinstance(entry, dict):
            raise ConfigError(f"serve.deployments.{name} must be a mapping, got {entry!r}")
    for name, options in [("router", serve.router)] + [
        (f"deployments.{n}", deployment_options(serve, n)) for n in serve.deployments
    ]:
        check_options(options, f"serve.{name}")


def check_options(options: DeploymentOptions, where: str) -> None:
    """Replica counts and limits that Serve would refuse only once deploying."""
    if options.num_replicas < 1 or options.max_ongoing_requests < 1:
        raise ConfigError(
            f"{where}: num_replicas and max_ongoing_requests must be >= 1, got {options.num_replicas} "
            f"and {options.max_ongoing_requests}"
        )
    if options.autoscaling_config is not None:
        from ray.serve.config import AutoscalingConfig  # Serve's own rules, checked before any model loads

        try:
            AutoscalingConfig(**options.autoscaling_config)
        except Exception as exc:  # pydantic's errors, each with its key; anything else in one line
            errors = exc.errors() if callable(getattr(exc, "errors", None)) else []
            why = "; ".join(": ".join([*map(str, e.get("loc", ())), str(e.get("msg"))]) for e in errors)
            raise ConfigError(f"{where}.autoscaling_config: {why or one_line(exc)}") from None
