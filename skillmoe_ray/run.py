"""Entry point: ``python -m skillmoe_ray.run +experiment=gpqa [key=value ...]``.

The composition root: Hydra composes the config from ``conf/``; this module validates it, builds
the demo models if asked, loads the data (failing fast on bad input, before any model loads),
starts Ray, runs the DriverActor, prints the summary, writes the report, and logs the run to W&B
(:mod:`skillmoe_ray.reporting.tracking`) once results.json is on disk. Errors caused by input are printed as one
line naming the problem, without a traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from skillmoe_ray.config import RunConfig, check_model_paths, load_config
from skillmoe_ray.engines import engine_entry
from skillmoe_ray.errors import ConfigError, SkillMoEError

if TYPE_CHECKING:
    from skillmoe_ray.reporting.report import Report

log = logging.getLogger("skillmoe_ray")
# Hydra's configs: skillmoe_ray/conf in an installed wheel, else the repository's conf/ (checkout, editable install)
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
CONF_DIR = next(d for d in (os.path.join(_PACKAGE, "conf"), os.path.join(os.path.dirname(_PACKAGE), "conf")) if os.path.isdir(d))


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


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
        context = ray.init(
            address="local",  # a new cluster, even where `ray start` left one that ray.init() would join
            num_cpus=cfg.resources.num_cpus,
            num_gpus=None if _has_cuda() else cfg.resources.gpus,
            include_dashboard=cfg.resources.dashboard,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
        url = getattr(context, "dashboard_url", None)
        if cfg.resources.dashboard and url:
            print(f"ray dashboard: http://{url}", flush=True)
    check_gpu_slots(cfg.resources.gpus)


def _on_driver(cfg: RunConfig, method: str, *args, show_progress: bool = False, on_event=None):
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
        cause = _user_error(exc)
        if cause is not None:
            raise cause from None
        raise


def run_pipeline(cfg: RunConfig, val, test, show_progress: bool, on_stage=None) -> dict:
    """Run the DriverActor on the local node and return results.json's content; ``on_stage`` gets
    each stage's row (:func:`skillmoe_ray.generation.stage_row`) as the stage ends."""

    def on_event(kind: str, row: dict) -> None:
        if kind == "stage" and on_stage is not None:
            on_stage(row)

    return _on_driver(cfg, "run", val, test, show_progress=show_progress, on_event=on_event)


def _user_error(exc: BaseException) -> SkillMoEError | None:
    """The user-caused error inside a chain of Ray task errors, if there is one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, SkillMoEError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return None


def write_report_line(run_dir: str, results: dict) -> Report | None:
    """Write the run's report and print one line saying where (or why it has no plots, or failed).

    results.json is on disk before this runs, so a failing plot costs the report, never the results.
    """
    from skillmoe_ray.reporting.report import write_report

    try:
        report = write_report(run_dir, results)
    except Exception as exc:  # any failure here must leave the finished run intact
        log.debug("writing the report failed", exc_info=True)  # shown with hydra.verbose=true
        print(f"report: not written ({type(exc).__name__}: {exc}); the results are in {run_dir}", flush=True)
        return None
    note = f" (tables only: {report.missing_plots})" if report.missing_plots else ""
    print(f"report: {report.path}{note}", flush=True)
    return report


def plan_only(cfg: RunConfig) -> None:
    """mode=plan: print the schedule and predicted makespans; loads no model and no hub dataset."""
    from skillmoe_ray.data import load_data
    from skillmoe_ray.forecast.planner import format_plan, make_plan

    local = all(s.source in ("local", "demo", "lab") for s in (cfg.data.val, cfg.data.test))
    val, test = load_data(cfg.data, cfg.seed) if local else (None, None)
    print(format_plan(make_plan(cfg, val, test)), flush=True)


def check_writable(directory: str, key: str) -> None:
    """Fail now, naming the key, when ``directory`` cannot be created or written (not after a stage's work)."""
    import tempfile

    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}={directory} is not a writable directory ({exc.strerror or exc}); "
                          f"set {key}=<a writable directory>") from None


def load_checked(tree: dict, run_dir: str):
    """Validated config, demo models built if asked, model paths checked, and the data loaded."""
    from skillmoe_ray.data import load_data

    cfg = load_config(tree, run_dir)
    check_writable(cfg.cache_dir, "cache_dir")
    val, test = load_data(cfg.data, cfg.seed)  # bad data fails here, before any model is built or trained
    if cfg.demo.build_models:
        from skillmoe_ray.demo import ensure_demo_models

        ensure_demo_models(cfg.demo)
    if cfg.lab.build_models:
        from skillmoe_ray.lab.build import ensure_lab_models

        ensure_lab_models(cfg.lab.models, cfg.lab.models_dir, cfg.lab.workers)
    if not engine_entry(cfg.engine.name).remote:  # served models live on their server, not on this disk
        check_model_paths(cfg.pool)
        if cfg.engine.name != "fake":  # the fake engine's models have no tokenizer
            from skillmoe_ray.input_checks import check_prompt_lengths

            check_prompt_lengths(cfg, val + test)
    log.info("loaded %d validation and %d test instances", len(val), len(test))
    return cfg, val, test


def prepare_service(overrides: list[str]) -> tuple[RunConfig, dict]:
    """Config and serving preparation (profiles, vocabulary, aggregator) for ``serve run``'s builder."""
    import time

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        tree = OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
    run_dir = os.path.join("runs", str(tree.get("experiment", "default")), time.strftime("serve-%Y-%m-%d_%H-%M-%S"))
    cfg, val, _ = load_checked({**tree, "mode": "serve"}, os.path.abspath(run_dir))
    return cfg, _on_driver(cfg, "prepare", val)


def execute(tree: dict, run_dir: str) -> dict | None:
    """Validate, prepare and run one configuration (no Hydra here, so tests can call it)."""
    from skillmoe_ray.reporting.summary import format_summary
    from skillmoe_ray.reporting.tracking import LiveTracking
    from skillmoe_ray.termination import sigterm_exits

    if tree.get("mode") == "plan":
        plan_only(load_config(tree, run_dir))
        return None
    cfg, val, test = load_checked(tree, run_dir)
    if cfg.mode == "serve":
        from skillmoe_ray_actors.serve import deploy

        deploy(cfg, _on_driver(cfg, "prepare", val))
        return None
    start_ray(cfg)  # the cluster is checked (its GPUs) before a W&B run is opened for it
    tracking = LiveTracking(cfg.tracking, run_dir, tree)  # live: one history row per stage as it ends
    try:
        with sigterm_exits():
            results = run_pipeline(cfg, val, test, show_progress=sys.stderr.isatty(), on_stage=tracking.stage_done)
            print(format_summary(results, run_dir), flush=True)
            report = write_report_line(run_dir, results)
    except BaseException as exc:  # an error, Ctrl-C or SIGTERM: the W&B run is marked failed, then the error goes on
        print(tracking.fail(exc), flush=True)
        raise
    print(tracking.finish(results, report.plots if report else {}), flush=True)
    return results


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import MissingMandatoryValue

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        try:
            tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            raise ConfigError(f"missing value for {exc.full_key} (set it on the command line: {exc.full_key}=...)") from None
        execute(tree, run_dir)
    except SkillMoEError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def cli() -> None:
    """``python -m skillmoe_ray.run``: the command line checked first (one line, exit 2), then Hydra runs it.

    Hydra would report an unknown key or group option in a paragraph and an unwritable run directory
    with a traceback, both before any of our code runs (:mod:`skillmoe_ray.config.hydra_checks`).
    """
    from skillmoe_ray.config.hydra_checks import check_command_line

    try:
        check_command_line(sys.argv[1:], CONF_DIR)
    except SkillMoEError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
