"""Reaching the Ray cluster: joining or starting it, and calling the DriverActor there.

:func:`on_driver` runs a DriverActor method on the local node (its artifacts land on this machine's disk)
and hands back the user's own errors (:class:`~skillmoe_ray.errors.SkillMoEError`) unwrapped from Ray's
task errors, so the command line prints them in one line.
"""

from __future__ import annotations

import logging
import os
import shutil

from skillmoe_ray.config import RunConfig
from skillmoe_ray.errors import SkillMoEError, user_facing


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


def logical_slots_line(gpus: int) -> str:
    """What ``resources.gpus`` means on a machine without CUDA (said once, when the local cluster starts)."""
    return (f"resources.gpus={gpus}: no CUDA on this machine, so these are {gpus} logical GPU slots on "
            f"the CPU (up to {gpus} experts active side by side, sharing its cores), not GPUs")


# What Ray raises when a new node's raylet misses its fixed registration window (30 s) with the GCS
STARTUP_TIMEOUT = "timed out during startup"


def init_local_ray(**kwargs):
    """``ray.init`` of a new local cluster, tried twice: on a loaded machine the raylet can miss Ray's fixed
    30 s registration window, and a second start usually succeeds. Other errors are raised at once."""
    import ray

    try:
        return ray.init(**kwargs)
    except Exception as exc:
        if STARTUP_TIMEOUT not in str(exc):
            raise
        logging.getLogger(__name__).warning("Ray's local start timed out (a loaded machine?): starting it "
                                            "again")
        ray.shutdown()
        return ray.init(**kwargs)


def start_ray(cfg: RunConfig) -> None:
    """Connect to the configured cluster, or start a local one (logical GPUs where there are none).

    A run submitted as a Ray Job finds its cluster in ``RAY_ADDRESS`` (set by the job supervisor) and
    joins it; in a Hydra multirun the cluster started for the first job serves all of them. A local
    cluster has Ray's dashboard with ``resources.dashboard``. A cluster with fewer GPUs than
    ``resources.gpus`` is refused at once (ConfigError naming what it has), not after a placement wait.
    """
    import ray

    from skillmoe_ray_actors.placement import check_gpu_slots

    if ray.is_initialized():
        check_gpu_slots(cfg.resources.gpus)
        return
    address = cfg.resources.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        context = init_local_ray(
            address="local",  # a new cluster, even where `ray start` left one that ray.init() would join
            num_cpus=cfg.resources.num_cpus,
            num_gpus=None if _has_cuda() else cfg.resources.gpus,
            include_dashboard=cfg.resources.dashboard,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
        if cfg.resources.gpus > 1 and not _has_cuda():
            print(logical_slots_line(cfg.resources.gpus), flush=True)
        url = getattr(context, "dashboard_url", None)
        if cfg.resources.dashboard and url:
            print(f"ray dashboard: http://{url}", flush=True)
    check_gpu_slots(cfg.resources.gpus)


def on_driver(cfg: RunConfig, method: str, *args, show_progress: bool = False, on_event=None):
    """Call a DriverActor method on the local node; user errors inside it come back unwrapped.

    With ``on_event`` the method is a stream of (kind, payload) items: each is passed to ``on_event``
    until the ``results`` item, whose payload is returned.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from skillmoe_ray_actors.driver import DriverActor

    start_ray(cfg)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    driver = ray.remote(DriverActor).options(num_cpus=0, scheduling_strategy=here).remote(cfg, show_progress)
    try:
        if on_event is None:
            return ray.get(getattr(driver, method).remote(*args))
        for ref in getattr(driver, method).options(num_returns="streaming").remote(*args):
            kind, payload = ray.get(ref)
            if kind == "results":
                return payload
            on_event(kind, payload)
        raise RuntimeError(f"DriverActor.{method} ended without results")
    except ray.exceptions.RayTaskError as exc:
        cause = user_error(exc)
        if cause is not None:
            raise cause from None
        raise


def run_pipeline(cfg: RunConfig, val, test, show_progress: bool, on_stage=None) -> dict:
    """Run the DriverActor on the local node and return results.json's content; ``on_stage`` gets
    each stage's row (:func:`skillmoe_ray.generation.stage_row`) as the stage ends."""

    def on_event(kind: str, row: dict) -> None:
        if kind == "stage" and on_stage is not None:
            on_stage(row)

    return on_driver(cfg, "run", val, test, show_progress=show_progress, on_event=on_event)


def user_error(exc: BaseException) -> SkillMoEError | None:
    """The user-caused error inside a chain of Ray task errors, if there is one.

    Ray re-creates a remote error as a subclass of its cause's class (so it passes ``isinstance`` checks for
    the project's errors) whose text is the whole remote traceback: the wrapper is looked through to its
    ``.cause`` (:func:`skillmoe_ray.errors.user_facing`), whose text is the one line the user sees.
    """
    return user_facing(exc)
