"""``python -m skillmoe_ray.reporting.lab_table``: the paper's Table 1 shape over seeds (``make lab-table``).

Runs ``mode=compare`` of an experiment (``lab_hard`` by default) once per seed (0, 1, 2 by default), one
after another, each through the project's own command line (``python -m skillmoe_ray.run``) into a run
directory named by the seed and a hash of the composed config, then prints one table built from the runs'
``results.json`` and ``final_answers.jsonl`` (:mod:`skillmoe_ray.reporting.seed_table`): per method, the
accuracy's mean +/- std over seeds per task and on average, and the paired difference to Symbolic-MoE
with its 95% bootstrap interval over every (seed, question) pair. The table is also written as Markdown
and CSV beside the runs.

A seed whose run directory already holds its results (same experiment, seed, overrides, config and
project code) is not run again, so a second call takes seconds; a run that did not finish, or one of
changed code, runs from the shared stage cache (its generations are reused where their prompts are).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from skillmoe_ray.cache import read_jsonl, write_atomic
from skillmoe_ray.progress import duration
from skillmoe_ray.reporting import seed_table

DEFAULT_OUT = "runs/lab_table"
LOG_TAIL_LINES = 20


def parser() -> argparse.ArgumentParser:
    """The command line of the table's launcher."""
    p = argparse.ArgumentParser(
        prog="python -m skillmoe_ray.reporting.lab_table",
        description="Run mode=compare of an experiment once per seed (cached: a seed whose results exist\n"
                    "for the same config is not run again) and print one table: per method, accuracy mean\n"
                    "+/- std over seeds per task and on average, and the paired difference to symbolic_moe\n"
                    "with its 95% bootstrap interval over all (seed, question) pairs. Writes it as\n"
                    "table.md and table.csv under OUT/EXPERIMENT.",
        epilog="examples: python -m skillmoe_ray.reporting.lab_table                (lab_hard, seeds 0 1 2)\n"
               "          python -m skillmoe_ray.reporting.lab_table --seeds 0 1 -- compare.methods=[single,"
               "symbolic_moe]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="lab_hard",
                   help="the experiment (+experiment=...; default lab_hard)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (default: 0 1 2)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"where the runs and the table go (default {DEFAULT_OUT}, git-ignored)")
    p.add_argument("overrides", nargs="*", help="further Hydra overrides of every run (after --)")
    return p


def seed_overrides(experiment: str, seed: int, extra: Sequence[str]) -> list[str]:
    """The overrides of one seed's compare run."""
    return [f"+experiment={experiment}", "mode=compare", f"seed={seed}", *extra]


def code_fingerprint(root: Path | None = None) -> str:
    """A hash of the Python sources under ``root`` (default: the installed ``skillmoe_ray`` package), their
    paths and contents: results computed by other code (a fixed extraction, a changed method) are not taken
    for this code's."""
    import hashlib

    from skillmoe_ray.seeding import stable_hash

    if root is None:
        import skillmoe_ray

        root = Path(skillmoe_ray.__file__).parent
    sources = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in root.rglob("*.py")}
    return stable_hash(sources, 64)


def run_dir_of(out: Path, experiment: str, seed: int, tree: dict, code: str = "") -> Path:
    """The seed's run directory: named by the seed, the composed config and the project's code
    (:func:`code_fingerprint`), so that a changed config (another override, a new recipe) or changed code
    gets a run of its own instead of reusing an older one."""
    from skillmoe_ray.seeding import stable_hash

    return out / experiment / f"seed{seed}-{stable_hash({'config': tree, 'code': code}, 10)}"


def finished(run_dir: Path) -> bool:
    """Whether the run directory holds a finished compare run's results."""
    return (run_dir / "results.json").is_file() and (run_dir / "final_answers.jsonl").is_file()


def run_seed(overrides: list[str], run_dir: Path) -> None:
    """One compare run through the project's command line; its output goes to ``compare.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "compare.log"
    command = [sys.executable, "-m", "skillmoe_ray.run", *overrides, f"hydra.run.dir={run_dir}"]
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not finished(run_dir):
        tail = log_path.read_text(encoding="utf-8").splitlines()[-LOG_TAIL_LINES:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"error: mode=compare failed (exit {done.returncode}): {' '.join(command)}; "
                         f"its log: {log_path}")


def planned_runs(experiment: str, seeds: Sequence[int], out: Path,
                 extra: Sequence[str]) -> list[tuple[int, list[str], Path]]:
    """(seed, its overrides, its run directory) of every seed, the command line checked first: a mistake
    (an unknown key, a bad option) is one line before any run starts."""
    from skillmoe_ray.config import CONF_DIR
    from skillmoe_ray.config.compose import compose_tree
    from skillmoe_ray.config.hydra_checks import check_command_line

    planned, code = [], code_fingerprint()
    for seed in seeds:
        overrides = seed_overrides(experiment, seed, extra)
        check_command_line([*overrides, f"hydra.run.dir={out}"], CONF_DIR)
        planned.append((seed, overrides, run_dir_of(out, experiment, seed, compose_tree(overrides), code)))
    return planned


def ensure_runs(experiment: str, seeds: Sequence[int], out: Path, extra: Sequence[str]) -> list[Path]:
    """Each seed's finished run directory, running the seeds that have none, one after another."""
    planned = planned_runs(experiment, seeds, out, extra)
    for i, (seed, overrides, run_dir) in enumerate(planned, 1):
        head = f"seed {seed} ({i}/{len(planned)})"
        if finished(run_dir):
            print(f"{head}: cached, results in {run_dir}", flush=True)
            continue
        print(f"{head}: running mode=compare of {experiment} (lab_hard: 2-4 min on 2 cores), "
              f"log in {run_dir / 'compare.log'}", flush=True)
        start = time.monotonic()
        run_seed(overrides, run_dir)
        print(f"{head}: done in {duration(time.monotonic() - start)}", flush=True)
    return [run_dir for _, _, run_dir in planned]


def load_run(run_dir: Path) -> seed_table.SeedRun:
    """One seed's results as the table reads them."""
    import json

    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return seed_table.seed_run(results, read_jsonl(run_dir / "final_answers.jsonl"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or reuse) every seed, then print and write the table."""
    from skillmoe_ray.errors import SkillMoEError

    args = parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if len(set(args.seeds)) < len(args.seeds):
        parser().error(f"--seeds repeats a seed ({' '.join(map(str, args.seeds))}): the std is over seeds")
    out = Path(args.out)
    try:
        dirs = ensure_runs(args.experiment, args.seeds, out, args.overrides)
        table = seed_table.build(args.experiment, [load_run(d) for d in dirs])
    except SkillMoEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): finished seeds and stages are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130
    markdown = seed_table.to_markdown(table)
    print("\n" + markdown, flush=True)
    md = write_atomic(out / args.experiment / "table.md", markdown)
    csv = write_atomic(out / args.experiment / "table.csv", seed_table.to_csv(table))
    print(f"table: {md}\ntable (CSV): {csv}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
