"""The Serve application built from a config: the deployments bound with their options, and its start.

Apart from the deployment classes (:mod:`skillmoe_ray_actors.serve`, ``serve_answerer``, ``serve_experts``),
as Ray Serve LLM's builders are:
:func:`application` applies ``cfg.serve``'s deployment options (Serve's back-pressure bounds),
:func:`build_app` is ``serve run jobs/serve_config.yaml``'s entry (it composes the config from Hydra
overrides and prepares the profiles on the cluster first), and :func:`deploy` starts the HTTP proxy
for ``python -m skillmoe_ray.run mode=serve``.
"""

from __future__ import annotations

import os
import time

from ray import serve

from skillmoe_ray.config import RunConfig
from skillmoe_ray.config.compose import compose_tree
from skillmoe_ray.method.results import ServingPreparation
from skillmoe_ray.preflight import load_checked
from skillmoe_ray_actors.cluster import on_driver
from skillmoe_ray_actors.serve import INGRESS_HEADROOM, SkillMoEService
from skillmoe_ray_actors.serve_answerer import SkillMoEAnswerer
from skillmoe_ray_actors.serve_experts import model_deployments, serve_options


def application(cfg: RunConfig, preparation: ServingPreparation) -> serve.Application:
    """The ingress over the answerer, with Serve's back-pressure bounds from cfg.serve; under
    ``serve.topology=per_expert`` the answerer calls each model's own deployment (``serve.deployments``)."""
    s = cfg.serve
    models = None
    if s.topology == "per_expert":
        import ray

        models = model_deployments(cfg, preparation, ray.cluster_resources().get("GPU", 0) > 0)
    router = serve_options(s.router)
    router.pop("max_ongoing_requests")  # the answerer's bounds are serve.max_ongoing/queued_requests
    answerer = SkillMoEAnswerer.options(max_ongoing_requests=s.max_ongoing_requests,
                                        max_queued_requests=s.max_queued_requests,
                                        **router).bind(cfg, preparation, models)
    ingress_limit = s.max_ongoing_requests + s.max_queued_requests + INGRESS_HEADROOM
    return SkillMoEService.options(max_ongoing_requests=ingress_limit).bind(cfg, answerer)


def build_app(args: dict) -> serve.Application:
    """Application builder for ``serve run``: args.overrides are Hydra overrides (e.g. +experiment=demo)."""
    cfg, preparation = prepare_service(list(args.get("overrides", [])))
    return application(cfg, preparation)


def deploy(cfg: RunConfig, preparation: ServingPreparation, blocking: bool = True) -> None:
    """Start the HTTP proxy on cfg.serve.host:port and run the application; block until interrupted."""
    import signal
    import threading

    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(application(cfg, preparation), name="skillmoe", route_prefix="/")
    print(f"skillmoe-ray is serving on http://{cfg.serve.host}:{cfg.serve.port} "
          "(POST /v1/chat/completions /v1/completions, GET /v1/models /v1/stats /healthz); Ctrl-C stops it",
          flush=True)
    print(ready_line(), flush=True)
    if not blocking:
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()


def ready_line() -> str:
    """What the warm-up left resident and what loads on first use (the answerer warms up before Serve
    reports it running, so this is known once ``serve.run`` returns)."""
    stats = serve.get_deployment_handle("SkillMoEAnswerer", app_name="skillmoe").stats.remote().result()
    return (f"resident: {', '.join(stats['resident']) or 'none'}; "
            f"loads on first use: {', '.join(stats['cold']) or 'none'}")


def prepare_service(overrides: list[str]) -> tuple[RunConfig, ServingPreparation]:
    """Config and serving preparation (profiles, vocabulary, aggregator) for ``serve run``'s builder."""
    tree = compose_tree(overrides)
    run_dir = os.path.join("runs", str(tree.get("experiment", "default")),
                           time.strftime("serve-%Y-%m-%d_%H-%M-%S"))
    cfg, val, _ = load_checked({**tree, "mode": "serve"}, os.path.abspath(run_dir))
    return cfg, on_driver(cfg, "prepare", val)
