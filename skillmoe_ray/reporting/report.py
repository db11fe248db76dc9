"""The run's report: report.md and four PNG plots in the run directory, written at the end of every run.

report.md holds the accuracy table (the rows of the summary and of comparison.md), accuracy by
skill, expert usage and the stage timings, and embeds the plots: accuracy per method, accuracy by
skill, expert usage (skill x expert heatmap) and the activation timeline (a Gantt chart). It is
built from results.json's content and recruitment.jsonl only, so the report of an earlier run can be
rebuilt: ``python -m skillmoe_ray.reporting.report RUN_DIR``. Without matplotlib it holds the tables only and
says why.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skillmoe_ray.cache import write_atomic
from skillmoe_ray.reporting.compare import fmt, to_markdown

TOP_SKILLS = 25  # skills shown in the per-skill plot and tables; a real benchmark has hundreds
NO_SKILL = "(no skill)"
PLOTS = {  # plot name -> heading in report.md; each is written as <name>.png
    "accuracy_by_method": "Accuracy per method",
    "accuracy_by_skill": "Accuracy by skill",
    "expert_usage": "Expert usage (skill x expert)",
    "timeline": "Expert activation timeline",
}


@dataclass(frozen=True)
class Report:
    """Where the report was written, its plots (name -> PNG), and why plots are missing if they are."""

    path: Path
    plots: dict[str, Path] = field(default_factory=dict)
    missing_plots: str | None = None


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON Lines file (none if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def top_skills(per_skill: Mapping[str, dict], limit: int = TOP_SKILLS) -> list[str]:
    """The ``limit`` skills with the most test instances, most frequent first (ties by name)."""
    return sorted(per_skill, key=lambda s: (-per_skill[s]["n"], s))[:limit]


def expert_usage(
    recruitments: Sequence[dict], experts: Sequence[str], limit: int = TOP_SKILLS
) -> tuple[list[str], list[str], list[list[int]]]:
    """Recruited slots per (skill, expert): rows, columns and counts of the usage heatmap.

    An instance with skills {a, b} and experts [x, x, y] adds 2 to (a, x) and (b, x) and 1 to
    (a, y) and (b, y): experts are drawn with replacement, and each slot is one expert answer.
    Rows are the ``limit`` skills with the most recruited slots; columns are the pool's experts in
    pool order (never-recruited ones too, as zeros), then any other recruited model.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for row in recruitments:
        for skill in row.get("skills") or [NO_SKILL]:
            for expert in row["experts"]:
                counts[skill, expert] += 1
    per_skill: Counter[str] = Counter()
    for (skill, _), n in counts.items():
        per_skill[skill] += n
    skills = sorted(per_skill, key=lambda s: (-per_skill[s], s))[:limit]
    columns = list(experts) + sorted({e for _, e in counts} - set(experts))
    return skills, columns, [[counts[s, e] for e in columns] for s in skills]


def _intervals(entries: Sequence[dict]) -> list[list[float]] | None:
    """The 95% Wilson intervals of ``entries`` (accuracies), or None when one has none (an older run)."""
    return [e["ci95"] for e in entries] if entries and all(e.get("ci95") for e in entries) else None


def _baselines_note(methods: Mapping[str, dict]) -> str:
    """Where the baselines are when a plain run has none to show beside its methods."""
    if any(name.startswith("single") for name in methods):
        return ""
    return "; baselines (single experts, random, MoA, ...): rerun with mode=compare"


def _ci(entry: dict | None) -> str | None:
    """"[0.908, 0.975]": an accuracy's 95% Wilson interval as a table cell (None when it has none)."""
    ci = (entry or {}).get("ci95")
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else None


def build_figures(results: dict, recruitments: Sequence[dict], limit: int = TOP_SKILLS) -> dict:
    """The four matplotlib figures (plot name -> Figure); raises ImportError when matplotlib is missing."""
    from skillmoe_ray.reporting import plots

    methods, per_skill = results["methods"], results["per_skill"]
    skills = top_skills(per_skill, limit)
    rows, columns, counts = expert_usage(recruitments, results.get("pool", []), limit)
    timeline = results.get("timeline", [])
    specialists = frozenset((skill, expert) for skill, g in results.get("gold_skills", {}).items()
                            for expert in g.get("specialists", {}))
    loads = sum(1 for t in timeline if t.get("kind") != "resident")
    return {
        "accuracy_by_method": plots.horizontal_bars(
            list(methods), [m["accuracy"] for m in methods.values()],
            f"Accuracy per method: {results['experiment']} ({results['n_instances']} test instances)"
            + _baselines_note(methods),
            "accuracy (error bars: 95% Wilson interval)", "method",
            intervals=_intervals(list(methods.values())),
        ),
        "accuracy_by_skill": plots.horizontal_bars(
            [f"{plots.shorten(s, 24)} (n={per_skill[s]['n']})" for s in skills],
            [per_skill[s]["accuracy"] for s in skills],
            f"Symbolic-MoE accuracy by skill ({len(skills)} of {len(per_skill)} skills, most frequent first)",
            "accuracy (error bars: 95% Wilson interval)", "skill (test instances)",
            intervals=_intervals([per_skill[s] for s in skills]),
        ),
        "expert_usage": plots.heatmap(
            rows, columns, counts, f"Expert usage: recruited answers ({len(rows)} most used skills)"
            + ("; outlined: the skill's specialists (validation accuracy >= 0.8)" if specialists else ""),
            "expert", "skill", "recruited answers", marked=specialists,
        ),
        "timeline": plots.gantt(
            timeline,
            f"Expert activations over time: {loads} activations, "
            f"run of {results.get('wall_seconds', 0):.1f} s",
        ),
    }


def draw_plots(run_dir: Path, results: dict, recruitments: Sequence[dict],
               limit: int = TOP_SKILLS) -> dict[str, Path]:
    """Write the four plots as <name>.png into ``run_dir``; raises ImportError when matplotlib is missing."""
    from skillmoe_ray.reporting import plots

    figures = build_figures(results, recruitments, limit)
    return {name: plots.save(fig, run_dir / f"{name}.png") for name, fig in figures.items()}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table, cells formatted like the summary's."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _image(plots: Mapping[str, Path], name: str) -> list[str]:
    return [f"![{PLOTS[name]}]({plots[name].name})", ""] if name in plots else []


def report_markdown(results: dict, plots: Mapping[str, Path], missing_plots: str | None,
                    limit: int = TOP_SKILLS) -> str:
    """report.md's text: run line, accuracy table, per-skill, expert and stage tables, embedded plots."""
    per_skill, per_expert, stages = results["per_skill"], results.get("per_expert", {}), results["stages"]
    skills = top_skills(per_skill, limit)
    experts = sorted(set(results.get("activations", {})) | set(per_expert))
    lines = [
        f"# Run report: {results['experiment']}",
        "",
        f"Mode {results.get('mode', 'run')}: {results['n_instances']} test and "
        f"{results.get('n_validation', '-')} "
        f"validation instances, k={results.get('k', '-')}, aggregator {results['aggregator']['selected']}, "
        f"{results.get('wall_seconds', 0):.1f} s.",
        "",
    ]
    if missing_plots:
        lines += [f"_No plots: {missing_plots}._", ""]
    lines += [f"## {PLOTS['accuracy_by_method']}", "", to_markdown(results),
              *_image(plots, "accuracy_by_method")]
    lines += [f"## {PLOTS['accuracy_by_skill']}", "",
              f"Symbolic-MoE's accuracy on the test instances of each skill "
              f"({len(skills)} of {len(per_skill)} skills, "
              "most frequent first).", "",
              markdown_table(["skill", "instances", "accuracy", "stderr", "95% Wilson interval"],
                             [[s, per_skill[s]["n"], per_skill[s]["accuracy"], per_skill[s].get("stderr"),
                               _ci(per_skill[s])] for s in skills]),
              *_image(plots, "accuracy_by_skill")]
    lines += [f"## {PLOTS['expert_usage']}", "",
              "Recruited answers per skill and expert (each of an instance's k "
              "slots counts once for each of its skills).", "", *_image(plots, "expert_usage"),
              markdown_table(
        ["expert", "activations", "recruited", "accuracy", "stderr", "95% Wilson interval", "no answer",
         "output tokens"],
        [[e, results.get("activations", {}).get(e, 0), per_expert.get(e, {}).get("recruited", 0),
          per_expert.get(e, {}).get("accuracy"), per_expert.get(e, {}).get("stderr"), _ci(per_expert.get(e)),
          per_expert.get(e, {}).get("no_answer"), per_expert.get(e, {}).get("output_tokens")]
         for e in experts],
    )]
    lines += [f"## {PLOTS['timeline']}", "", markdown_table(
        ["stage", "seconds", "cached", "requests", "generated"],
        [[name, s["seconds"], "yes" if s["cached"] else "no", s.get("requests"), s.get("generated")] for name,
         s in stages.items()],
    ), *_image(plots, "timeline")]
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dir: str | Path, results: dict, limit: int = TOP_SKILLS) -> Report:
    """Write report.md and the plots into ``run_dir``; tables only when matplotlib is not installed."""
    run_dir = Path(run_dir)
    try:
        plots, missing = draw_plots(run_dir, results, read_jsonl(run_dir / "recruitment.jsonl"), limit), None
    except ImportError as exc:
        if "matplotlib" not in str(exc):
            raise
        plots, missing = {}, "matplotlib is not installed (pip install 'skillmoe-ray[tracking]')"
    path = write_atomic(run_dir / "report.md", report_markdown(results, plots, missing, limit))
    return Report(path, plots, missing)


def results_files(dirs: Sequence[str]) -> list[Path]:
    """results.json of each directory, or of every run under it (a multirun's parent directory)."""
    found = []
    for d in map(Path, dirs):
        here = sorted(d.glob("results.json")) or sorted(d.glob("**/results.json"))
        if not here:
            raise SystemExit(f"error: no results.json in or under {d}")
        found += here
    return found


def load_results(path: Path) -> dict:
    """The content of one results.json; a one-line SystemExit when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"error: no results.json in {path.parent} (is it a run directory?)") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None


def repeated_seeds(runs: Sequence[dict]) -> str | None:
    """A warning when runs repeat a seed (their spread is then not over seeds), None otherwise."""
    counts = Counter(r.get("seed") for r in runs if r.get("seed") is not None)
    repeated = {seed: n for seed, n in sorted(counts.items()) if n > 1}
    if not repeated:
        return None
    which = ", ".join(f"seed {seed} in {n} runs" for seed, n in repeated.items())
    return f"warning: runs repeat a seed ({which}): the std below is not a spread over seeds"


def seeds_table(files: Sequence[Path]) -> str:
    """Mean +/- std (over runs, typically seeds) of each method's accuracy, as a Markdown table."""
    from skillmoe_ray.reporting.stats import seeds_summary

    runs = [load_results(f) for f in files]
    warning = repeated_seeds(runs)
    if warning:
        print(warning, file=sys.stderr)
    seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None})
    summary = seeds_summary(runs)
    rows = [[name, f"{s['mean']:.3f} +/- {s['std']:.3f}", s["runs"]] for name, s in summary.items()]
    head = (f"{len(runs)} runs of {runs[0]['experiment']}"
            + (f" (seeds {', '.join(map(str, seeds))})" if seeds else ""))
    return head + "\n\n" + markdown_table(["method", "accuracy (mean +/- std over runs)", "runs"], rows)


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line ("error: ... (see --help)"), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m skillmoe_ray.reporting.report``."""
    p = _OneLineParser(
        prog="python -m skillmoe_ray.reporting.report",
        description="Rebuild the report (report.md and its plots) of earlier runs from their results.json,\n"
                    "or, with --seeds, print each method's accuracy as mean +/- std over runs (seeds).",
        epilog="examples: python -m skillmoe_ray.reporting.report runs/demo/2026-01-01_12-00-00\n"
               "          python -m skillmoe_ray.reporting.report --seeds multirun/2026-01-01/12-00-00",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="a run directory (holds results.json)")
    p.add_argument("--seeds", nargs="+", metavar="DIR",
                   help="run directories, or parents of runs (a multirun): mean +/- std per method")
    return p


def main(argv: Sequence[str]) -> None:
    """Rebuild the report of earlier runs from their results.json.

    ``--seeds DIR...``: mean +/- std per method.
    """
    args = parser().parse_args(list(argv))
    if not args.run_dirs and not args.seeds:
        parser().error("give a run directory, or --seeds DIR...")
    if args.seeds:
        print(seeds_table(results_files([*args.seeds, *args.run_dirs])))
        return
    for run_dir in args.run_dirs:
        results = load_results(Path(run_dir) / "results.json")
        print(write_report(run_dir, results).path)


if __name__ == "__main__":
    main(sys.argv[1:])
