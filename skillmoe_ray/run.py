"""Entry point: ``python -m skillmoe_ray.run +experiment=gpqa [key=value ...]``.

The composition root: Hydra composes the config from ``conf/``; this module validates it, builds
the demo models if asked, loads the data (failing fast on bad input, before any model loads),
starts Ray, runs the DriverActor, prints the summary, writes the report, and logs the run to W&B
(:mod:`skillmoe_ray.reporting.tracking`) once results.json is on disk. Errors caused by input are printed as
one
line naming the problem, without a traceback.

Exit codes (the README's reliability section): 0 done; 2 an error the user can act on (bad config or
data, an expert that kept failing, a cache or run directory that cannot be written, a run directory in
use), one line on stderr; 1 an unexpected error, one line on stderr naming it; 130 Ctrl-C; 143 SIGTERM.
Every failure's traceback goes to ``run.log`` in the run directory; finished work stays in the cache.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from skillmoe_ray.config import CONF_DIR, RunConfig, load_config
from skillmoe_ray.errors import (
    STORAGE_ERRNOS,
    ConfigError,
    SkillMoEError,
    StorageError,
    one_line,
    root_cause,
    storage_error,
    user_facing,
)
from skillmoe_ray.preflight import load_checked, run_dir_lock
from skillmoe_ray.registry import DATA_SOURCES

if TYPE_CHECKING:
    from skillmoe_ray.reporting.report import Report

log = logging.getLogger("skillmoe_ray")
INTERRUPT_EXIT = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C stopped
KEPT = "finished chunks and stages are kept in the cache; rerun the same command to resume"


def failure_line(exc: BaseException, run_dir: str) -> tuple[str, int]:
    """The one line a failed run prints, and its exit code; the traceback is appended to ``run.log``."""
    import traceback

    try:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "run.log"), "a", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(exc)))
        where = f"traceback in {os.path.join(run_dir, 'run.log')}"
    except (
        OSError
    ) as err:  # a run directory that cannot be written: the line says so, the run's cache is intact
        where = f"no traceback kept ({run_dir} cannot be written: {err.strerror or err})"
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted (Ctrl-C): {KEPT}", INTERRUPT_EXIT
    user = user_facing(exc) or written(root_cause(exc), run_dir)
    if user is not None:
        return f"error: {user}", 2
    return f"error: unexpected {one_line(exc)} ({where}; {KEPT})", 1


def written(exc: BaseException, run_dir: str) -> StorageError | None:
    """A failure to write a file (a full disk, no permission, a symlink loop), named as one."""
    if not isinstance(exc, OSError) or not exc.filename or exc.errno not in STORAGE_ERRNOS:
        return None
    inside = os.path.abspath(str(exc.filename)).startswith(os.path.abspath(run_dir))
    return storage_error(exc, "the run directory" if inside else "a file", str(exc.filename))


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
        print(
            f"report: not written ({type(failure).__name__}: {failure}); the results are in {run_dir}",
            flush=True,
        )
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
    if tree.get("mode") == "plan":
        plan_only(load_config(tree, run_dir))
        return None
    with run_dir_lock(run_dir):  # a second run in this directory is refused (one line), not interleaved
        return run_locked(tree, run_dir)


def run_locked(tree: dict, run_dir: str) -> dict | None:
    """A batch run or the service, in a run directory this process holds."""
    from skillmoe_ray.reporting.summary import format_summary
    from skillmoe_ray.reporting.tracking import LiveTracking
    from skillmoe_ray.termination import sigterm_exits

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
            results = run_pipeline(
                cfg, val, test, show_progress=sys.stderr.isatty(), on_stage=tracking.stage_done
            )
            report = write_report_line(run_dir, results, format_summary(results, run_dir))
    except (
        BaseException
    ) as exc:  # an error, Ctrl-C or SIGTERM: the W&B run is marked failed, then the error goes on
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
            raise ConfigError(
                f"missing value for {exc.full_key} (set it on the command line: {exc.full_key}=...)"
            ) from None
        execute(tree, run_dir)
    except (Exception, KeyboardInterrupt) as exc:  # SystemExit (SIGTERM's 143) goes through as it is
        line, code = failure_line(exc, run_dir)
        print(line, file=sys.stderr, flush=True)
        sys.exit(code)


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
