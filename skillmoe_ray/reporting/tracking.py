"""Experiment tracking with Weights & Biases behind a small facade.

The entry point opens a :class:`LiveTracking` in its own process when the pipeline starts: a tracker
for ``tracking.mode`` (auto: ``$WANDB_MODE`` if set, else online when logged in and offline
otherwise). Each stage adds one history row as it ends (seconds, requests, tokens, activations so
far); once results.json and the report are written, the results are logged, the run is finished,
and the user sees one line. A run that dies (an error, Ctrl-C, SIGTERM) is marked failed (exit
code 1), keeping the rows of the stages that finished. A W&B run holds the resolved Hydra config
as its config, one history row per stage, and as its summary the accuracies, stage timings and
expert activations (with each accuracy's standard error and 95% Wilson interval), the per-instance
predictions and per-skill accuracy as tables and the report's plots as images; per-method and per-skill
accuracy are W&B bar charts too; profiles.json and results.json are artifacts. The stage rows step by
``stage_index`` and stay out of the summary (``define_metric``); the run is named after the experiment, k
and seed; system metrics are recorded where there is an NVIDIA GPU. Without wandb installed,
or with ``tracking.mode=disabled``, a :class:`NullTracker` says that tracking is off and why. wandb is
imported here only, and only when a run is tracked.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from skillmoe_ray.config import TrackingConfig
from skillmoe_ray.errors import one_line
from skillmoe_ray.reporting.compare import COST_COLUMNS
from skillmoe_ray.reporting.report import read_jsonl

log = logging.getLogger(__name__)
WANDB_ENV_MODES = {"online": "online", "offline": "offline", "disabled": "disabled", "dryrun": "offline",
                   "run": "online"}
ARTIFACTS = {"profiles.json": "profiles",
             "results.json": "results"}  # run-directory file -> W&B artifact type


def logged_in(environ: Mapping[str, str] = os.environ) -> bool:
    """True when W&B has credentials: ``WANDB_API_KEY``, or a netrc entry for the W&B API host."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """The mode W&B runs in (online, offline or disabled) and the reason, for the status line."""
    if mode != "auto":
        return mode, f"tracking.mode={mode}"
    env_mode = environ.get("WANDB_MODE", "")
    if env_mode in WANDB_ENV_MODES:
        return WANDB_ENV_MODES[env_mode], f"WANDB_MODE={env_mode}"
    if logged_in(environ):
        return "online", "logged in to W&B"
    return "offline", "not logged in to W&B"


def primitive(value: Any) -> Any:
    """``value`` with only JSON types: dicts with string keys, lists, str, int, float, bool, None."""
    if isinstance(value, Mapping):
        return {str(k): primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [primitive(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def summary_values(results: dict) -> dict[str, Any]:
    """The W&B summary: accuracy per method and task, costs, stage seconds and cache hits, activations.

    Keys are ``/``-separated so the W&B UI groups them (``accuracy/symbolic_moe``,
    ``accuracy/symbolic_moe/gpqa_diamond``, ``stage/profiles/seconds``, ``activations/<expert>``);
    sweep specs name ``accuracy/symbolic_moe`` as their metric.
    """
    out: dict[str, Any] = {"n_instances": results["n_instances"], "wall_seconds": results.get("wall_seconds")}
    for name, method in results["methods"].items():
        out[f"accuracy/{name}"] = method["accuracy"]
        if "stderr" in method:
            out[f"accuracy_stderr/{name}"] = method["stderr"]
        if method.get("ci95"):
            out[f"accuracy_ci95_low/{name}"], out[f"accuracy_ci95_high/{name}"] = method["ci95"]
        if "vs_symbolic_moe" in method:
            out.update({f"vs_symbolic_moe/{name}/{k}": v for k, v in method["vs_symbolic_moe"].items()})
        out.update({f"accuracy/{name}/{task}": acc for task, acc in method["per_task"].items()})
        out.update({f"cost/{name}/{c}": method[c] for c in COST_COLUMNS if method.get(c) is not None})
    for stage, record in results["stages"].items():
        out[f"stage/{stage}/seconds"] = record["seconds"]
        out[f"stage/{stage}/cached"] = bool(record["cached"])
    out.update({f"activations/{expert}": n for expert, n in results.get("activations", {}).items()})
    out["activations_total"] = sum(results.get("activations", {}).values())
    if results.get("specialist_share") is not None:
        out["specialist_share"] = results["specialist_share"]
    out.update({f"recruited/{expert}": e["recruited"] for expert, e in results.get("per_expert", {}).items()})
    return out


def prediction_table(final_answers: list[dict], recruitments: list[dict]) -> tuple[list[str], list[list]]:
    """Columns and rows of the per-instance predictions: gold, each method's answer and correctness,
    and the instance's skills and recruited experts."""
    methods = list(dict.fromkeys(m for row in final_answers for m in row["answers"]))
    recruited = {r["instance_id"]: r for r in recruitments}
    columns = ["id", "task", "gold", "skills", "experts"]
    columns += [c for m in methods for c in (f"{m} answer", f"{m} correct")]
    rows = []
    for row in final_answers:
        r = recruited.get(row["id"], {})
        cells = [row["id"], row["task"], str(row["gold"]), ", ".join(r.get("skills", [])),
                 ", ".join(r.get("experts", []))]
        for m in methods:
            answer = row["answers"].get(m)
            cells += [None if answer is None else str(answer), row["correct"].get(m)]
        rows.append(cells)
    return columns, rows


# The keys of a stage's history row (generation.stage_row): plotted against the stage index, kept out of
# the summary (which holds the finished run's results, not the last stage's numbers).
STAGE_KEYS = ("stage", "stage_*", "activations_so_far", "elapsed_seconds")


def define_stage_metrics(run: Any) -> None:
    """Stage rows step by ``stage_index`` and leave the summary alone (W&B's ``define_metric``)."""
    run.define_metric("stage_index", summary="none")
    for key in STAGE_KEYS:
        run.define_metric(key, step_metric="stage_index", summary="none")


def run_name(config_tree: Mapping) -> str:
    """The W&B run's name: the experiment, k and seed ("gpqa-k3-seed0"), what sets runs of a sweep apart."""
    recruit = config_tree.get("recruit") or {}
    parts = [str(config_tree.get("experiment", "run"))]
    if isinstance(recruit, Mapping) and recruit.get("k") is not None:
        parts.append(f"k{recruit['k']}")
    if config_tree.get("seed") is not None:
        parts.append(f"seed{config_tree['seed']}")
    return "-".join(parts)


def system_metrics_wanted() -> bool:
    """W&B's system metrics (GPU memory and utilization) are kept on a machine with an NVIDIA GPU; on the
    CPU they record only the machine's load, which is not the run's."""
    return shutil.which("nvidia-smi") is not None


def accuracy_charts(wandb: Any, results: dict) -> dict[str, Any]:
    """Per-method and per-skill accuracy as W&B bar charts (``wandb.plot.bar`` over a ``wandb.Table``),
    with each accuracy's standard error and 95% Wilson interval in the table."""
    columns = ["name", "accuracy", "stderr", "ci95_low", "ci95_high"]

    def table(entries: Mapping[str, dict]) -> Any:
        rows = [[name, e["accuracy"], e.get("stderr"), *(e.get("ci95") or (None, None))]
                for name, e in entries.items()]
        return wandb.Table(columns=columns, data=rows)

    return {
        "charts/accuracy_by_method": wandb.plot.bar(table(results["methods"]), "name", "accuracy",
                                                    title="Accuracy per method"),
        "charts/accuracy_by_skill": wandb.plot.bar(table(results["per_skill"]), "name", "accuracy",
                                                   title="Symbolic-MoE accuracy by skill"),
    }


def artifact_name(experiment: str, kind: str) -> str:
    """A W&B artifact name (letters, digits, '-', '_', '.') for one experiment's file of ``kind``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{experiment}-{kind}")


class Tracker(Protocol):
    """What the entry point needs from a tracker."""

    def log_stage(self, row: dict) -> None: ...

    def log_run(self, run_dir: Path, results: dict, plots: Mapping[str, Path]) -> None: ...

    def finish(self) -> None: ...

    def abort(self, reason: str = "") -> None: ...

    def status(self) -> str: ...


@dataclass
class NullTracker:
    """Tracking is off; ``reason`` says why (disabled, or wandb not installed)."""

    reason: str

    def log_stage(self, row: dict) -> None:
        """Nothing to log."""

    def log_run(self, run_dir: Path, results: dict, plots: Mapping[str, Path]) -> None:
        """Nothing to log."""

    def finish(self) -> None:
        """Nothing to finish."""

    def abort(self, reason: str = "") -> None:
        """Nothing to abort."""

    def status(self) -> str:
        return f"tracking: off ({self.reason})"


class WandbTracker:
    """One W&B run, opened with the run's config; logs the finished run's results and files."""

    def __init__(self, wandb: Any, run: Any, mode: str, reason: str):
        self.wandb, self.run, self.mode, self.reason = wandb, run, mode, reason

    def log_stage(self, row: dict) -> None:
        """One history row for a stage that ended."""
        self.run.log(row)

    def log_run(self, run_dir: Path, results: dict, plots: Mapping[str, Path]) -> None:
        """Summary values, the predictions and per-skill tables, the plots, and the artifacts.

        All go into the summary, not a history row (the history holds one row per stage), except the
        per-method and per-skill accuracy charts: W&B charts are logged, in one last row.
        """
        wandb = self.wandb
        columns, rows = prediction_table(read_jsonl(run_dir / "final_answers.jsonl"),
                                         read_jsonl(run_dir / "recruitment.jsonl"))
        skills = [[skill, s["n"], s["accuracy"], s.get("stderr"), *(s.get("ci95") or (None, None))]
                  for skill, s in results["per_skill"].items()]
        payload = {
            "predictions": wandb.Table(columns=columns, data=rows),
            "per_skill": wandb.Table(
                columns=["skill", "instances", "accuracy", "stderr", "ci95_low", "ci95_high"], data=skills),
        }
        payload.update({f"report/{name}": wandb.Image(str(path)) for name, path in plots.items()})
        self.run.summary.update({**summary_values(results), "run_dir": str(run_dir), **payload})
        self.run.log(accuracy_charts(wandb, results))  # charts are logged (one history row), not summarized
        for filename, kind in ARTIFACTS.items():
            artifact = wandb.Artifact(artifact_name(results["experiment"], kind), type=kind,
                                      metadata={"run_dir": str(run_dir), "k": results.get("k")})
            artifact.add_file(str(run_dir / filename))
            self.run.log_artifact(artifact)

    def finish(self) -> None:
        self.run.finish()
        self._flush()

    def _flush(self) -> None:
        """Offline, finish() may return before W&B's service has written the run's file; its teardown waits
        for that, so the run on disk is whole when the status line names it (a later run starts a new
        service)."""
        if self.mode == "offline":
            self.wandb.teardown()

    def abort(self, reason: str = "") -> None:
        """Close the run as failed after an error (best effort: the first error is the one reported)."""
        try:
            if reason:
                self.run.summary["error"] = reason
            self.run.finish(exit_code=1)
            self._flush()
        except Exception:
            log.debug("finishing the failed W&B run failed too", exc_info=True)

    def status(self) -> str:
        if self.mode == "offline":
            path = Path(self.run.dir).parent
            return f"tracking: W&B offline run ({self.reason}) in {path}; upload it with: wandb sync {path}"
        return f"tracking: W&B run {self.run.url}"


def open_tracker(cfg: TrackingConfig, run_dir: str | Path, config_tree: Mapping) -> Tracker:
    """A tracker for ``cfg.mode``: a W&B run (online or offline) or, when off, a NullTracker saying why."""
    mode, reason = resolve_mode(cfg.mode)
    if mode == "disabled":
        return NullTracker(reason)
    try:
        import wandb
    except ImportError:
        return NullTracker("wandb is not installed: pip install 'skillmoe-ray[tracking]'")
    directory = Path(cfg.dir or run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    experiment = str(config_tree.get("experiment", "run"))
    run = wandb.init(
        mode=mode,
        project=cfg.project,
        entity=cfg.entity,
        group=cfg.group or experiment,
        name=run_name(config_tree),
        tags=list(dict.fromkeys([experiment, str(config_tree.get("mode", "run")), *cfg.tags])),
        dir=str(directory),
        config=primitive(config_tree),
        # The console is the run's own output (and Ray's); system metrics only where there is a GPU to watch.
        settings=wandb.Settings(console="off", x_disable_stats=not system_metrics_wanted(), silent=True),
    )
    define_stage_metrics(run)
    return WandbTracker(wandb, run, mode, reason)


class LiveTracking:
    """The W&B run of one batch run, open while its pipeline runs; tracking never fails the run.

    Opening, a stage row, or the final logging may fail (no W&B, a full disk): the failure is kept
    and the run goes on untracked; :meth:`finish` or :meth:`fail` returns the one status line.
    """

    def __init__(self, cfg: TrackingConfig, run_dir: str | Path, config_tree: Mapping):
        self.run_dir = Path(run_dir)
        self.tracker: Tracker | None = None
        self.error: Exception | None = None
        try:
            self.tracker = open_tracker(cfg, run_dir, config_tree)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        log.debug(
            "tracking failed", exc_info=True
        )  # the traceback with hydra.verbose=true; the user sees one line
        self.error = self.error or exc
        if self.tracker is not None:
            self.tracker.abort()
            self.tracker = None

    def stage_done(self, row: dict) -> None:
        """Log a stage's row as it ends."""
        if self.tracker is not None:
            try:
                self.tracker.log_stage(row)
            except Exception as exc:
                self._failed(exc)

    def finish(self, results: dict, plots: Mapping[str, Path]) -> str:
        """Log the finished run's results and close it; returns the status line."""
        if self.tracker is not None:
            try:
                self.tracker.log_run(self.run_dir, results, plots)
                self.tracker.finish()
                return self.tracker.status()
            except Exception as exc:
                self._failed(exc)
        return self._failure_line(f"the run's results are in {self.run_dir}")

    def fail(self, cause: BaseException) -> str:
        """Mark the run failed (it died: an error, Ctrl-C, SIGTERM), keeping the stages logged so far."""
        if self.tracker is None:
            return self._failure_line("the run failed")
        if isinstance(self.tracker, NullTracker):
            return self.tracker.status()
        reason = one_line(cause)[:300]
        self.tracker.abort(reason)
        status, self.tracker = self.tracker.status(), None
        return f"{status} (marked failed: {reason})"

    def _failure_line(self, where: str) -> str:
        if self.error is None:
            return "tracking: off"
        return f"tracking: failed ({type(self.error).__name__}: {self.error}); {where}"


def track_run(
    cfg: TrackingConfig, run_dir: str | Path, config_tree: Mapping, results: dict, plots: Mapping[str, Path]
) -> str:
    """Log a finished run at once and return the one status line.

    A tracking failure is reported, not raised.
    """
    return LiveTracking(cfg, run_dir, config_tree).finish(results, plots)
