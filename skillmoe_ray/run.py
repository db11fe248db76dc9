"""Entry point: ``python -m skillmoe_ray.run +experiment=gpqa [key=value ...]``.

The composition root: Hydra composes the config from ``conf/``; this module validates it, builds
the demo models if asked, loads the data (failing fast on bad input, before any model loads),
starts Ray, runs the DriverActor, prints the summary, writes the report, and logs the run to W&B
(:mod:`skillmoe_ray.reporting.tracking`) once results.json is on disk. Errors caused by input are printed as one
line naming the problem, without a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from skillmoe_ray.config import CONF_DIR, RunConfig, load_config
from skillmoe_ray.errors import ConfigError, SkillMoEError
from skillmoe_ray.preflight import load_checked
from skillmoe_ray.registry import DATA_SOURCES

if TYPE_CHECKING:
    from skillmoe_ray.reporting.report import Report

log = logging.getLogger("skillmoe_ray")
def write_report_line(run_dir: str, results: dict, summary: str = "") -> Report | None:
    """Write the run's report, then print ``summary`` and one line saying where the report is (or why it
    has no plots, or failed). The report is drawn first so that what drawing prints (matplotlib's "building
    the font cache" on a first run) comes before the summary, not between it and the report line.

    results.json is on disk before this runs, so a failing plot costs the report, never the results.
    """
    from skillmoe_ray.reporting.report import write_report

    try:
        report, failure = write_report(run_dir, results), None
    except Exception as exc:  # any failure here must leave the finished run intact
        log.debug("writing the report failed", exc_info=True)  # shown with hydra.verbose=true
        report, failure = None, exc
    if summary:
        print(summary, flush=True)
    if report is None:
        print(f"report: not written ({type(failure).__name__}: {failure}); the results are in {run_dir}",
              flush=True)
        return None
    note = f" (tables only: {report.missing_plots})" if report.missing_plots else ""
    print(f"report: {report.path}{note}", flush=True)
    return report


def plan_only(cfg: RunConfig) -> None:
    """mode=plan: print the schedule and predicted makespans; loads no model and no hub dataset."""
    from skillmoe_ray.data import load_data
    from skillmoe_ray.forecast.planner import format_plan, make_plan

    local = all(DATA_SOURCES.get(s.source).offline for s in (cfg.data.val, cfg.data.test))
    val, test = load_data(cfg.data, cfg.seed) if local else (None, None)
    print(format_plan(make_plan(cfg, val, test)), flush=True)


def execute(tree: dict, run_dir: str) -> dict | None:
    """Validate, prepare and run one configuration (no Hydra here, so tests can call it)."""
    from skillmoe_ray.reporting.summary import format_summary
    from skillmoe_ray.reporting.tracking import LiveTracking
    from skillmoe_ray.termination import sigterm_exits

    if tree.get("mode") == "plan":
        plan_only(load_config(tree, run_dir))
        return None
    cfg, val, test = load_checked(tree, run_dir)
    from skillmoe_ray_actors.cluster import on_driver, run_pipeline, start_ray

    if cfg.mode == "serve":
        from skillmoe_ray_actors.serve_app import deploy

        deploy(cfg, on_driver(cfg, "prepare", val))
        return None
    start_ray(cfg)  # the cluster is checked (its GPUs) before a W&B run is opened for it
    tracking = LiveTracking(cfg.tracking, run_dir, tree)  # live: one history row per stage as it ends
    try:
        with sigterm_exits():
            results = run_pipeline(cfg, val, test, show_progress=sys.stderr.isatty(), on_stage=tracking.stage_done)
            report = write_report_line(run_dir, results, format_summary(results, run_dir))
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
    from skillmoe_ray.progress import plain_colors_off_terminal

    plain_colors_off_terminal()
    try:
        check_command_line(sys.argv[1:], CONF_DIR)
    except SkillMoEError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
