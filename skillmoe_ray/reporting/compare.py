"""The comparison table of mode=compare: accuracy per task and cost per method, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from skillmoe_ray.cache import write_atomic
from skillmoe_ray.reporting import stats

COST_COLUMNS = ("generated_tokens", "gpu_seconds", "activations", "wall_seconds")


PAIRED_COLUMNS = ("vs_symbolic_moe", "vs_low", "vs_high")
CI_COLUMNS = ("ci95_low", "ci95_high")  # the accuracy's 95% Wilson interval


def _paired(m: dict) -> list:
    paired = m.get("vs_symbolic_moe")
    return [paired["difference"], paired["low"], paired["high"]] if paired else [None, None, None]


def comparison_rows(results: dict) -> tuple[list[str], list[list]]:
    """Header and one row per method: name, accuracy, its standard error and 95% Wilson interval, per-task
    accuracy, the
    paired difference to symbolic_moe with its 95% bootstrap interval (mode=compare), cost columns, note."""
    methods = results["methods"]
    tasks = sorted({t for m in methods.values() for t in m["per_task"]})
    paired = any("vs_symbolic_moe" in m for m in methods.values())
    header = ["method", "accuracy", "stderr", *CI_COLUMNS, *tasks, *(PAIRED_COLUMNS if paired else ()),
              *COST_COLUMNS, "note"]
    rows = [
        [name, m["accuracy"], m.get("stderr"), *(m.get("ci95") or (None, None)),
         *(m["per_task"].get(t, "") for t in tasks),
         *(_paired(m) if paired else ()), *(m.get(c) for c in COST_COLUMNS), m.get("note", "")]
        for name, m in methods.items()
    ]
    return header, rows


def display_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """The comparison for people: "0.950 +/- 0.020 [0.908, 0.975]" (standard error, 95% Wilson interval), and
    the difference as "-0.558 [-0.642, -0.475]"."""
    header, rows = comparison_rows(results)
    out_rows = []
    skip = {"stderr", "vs_low", "vs_high", *CI_COLUMNS}
    titles = {"vs_symbolic_moe": "vs symbolic_moe [95% CI]"}
    out_header = [titles.get(name, name) for name in header if name not in skip]
    for row in rows:
        cell = dict(zip(header, row))
        shown = []
        for name in header:
            if name in skip:
                continue
            if name == "accuracy" and cell.get("stderr") is not None:
                ci = None if cell["ci95_low"] is None else [cell["ci95_low"], cell["ci95_high"]]
                entry = {"accuracy": cell["accuracy"], "stderr": cell["stderr"], "ci95": ci}
                shown.append(stats.shown(entry))
            elif name == "vs_symbolic_moe":
                shown.append("-" if cell[name] is None else
                             f"{cell[name]:+.3f} [{cell['vs_low']:+.3f}, {cell['vs_high']:+.3f}]")
            else:
                shown.append(fmt(cell[name]))
        out_rows.append(shown)
    return out_header, out_rows


def gold_skill_rows(results: dict) -> tuple[list[str], list[list]]:
    """Header and one row per gold skill: test instances, its specialists, their answers' test accuracy."""
    header = ["gold skill", "n", "specialists (validation accuracy)", "specialist answers", "their accuracy"]
    rows = [
        [skill, g["n"], ", ".join(f"{m} ({a:.2f})" for m, a in g["specialists"].items()) or "none",
         g["specialist_answers"], g["specialist_test_accuracy"]]
        for skill, g in results.get("gold_skills", {}).items()
    ]
    return header, rows


def specialist_line(results: dict) -> str:
    """The share of recruited slots that went to a specialist of the instance's gold skill."""
    return (f"Recruited (instance, expert) slots that went to a specialist of the instance's gold skill "
            f"(validation accuracy >= 0.8 on it): {fmt(results['specialist_share'])}")


def comparison_summary(results: dict) -> dict:
    """Activations this comparison needed versus running every method on its own."""
    test_time = [
        t
        for t in results["timeline"]
        if t["stage"] in ("inference", "aggregation") or t["stage"].startswith("moa_")
    ]
    return {
        "activations_actual": sum(1 for t in test_time if t["kind"] != "resident"),
        "activations_if_run_separately": sum(m["activations"] for m in results["methods"].values()),
    }


def fmt(value) -> str:
    """A table cell: floats to 3 decimals, None as '-'."""
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def to_markdown(results: dict) -> str:
    """The comparison as a Markdown table, with the sharing summary underneath."""
    header, rows = display_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        "Accuracy +/- its standard error, sqrt(p (1 - p) / n), then [its 95% Wilson interval] "
        "(honest at 15/15, where the standard error is 0); with mode=compare, each method's accuracy "
        "minus symbolic_moe's on the same instances and its 95% paired bootstrap interval.",
    ]
    summary = results.get("comparison")
    if summary:
        lines.append("")
        lines.append(
            f"Expert activations at test time: {summary['activations_actual']} in this comparison, "
            f"{summary['activations_if_run_separately']} if every method ran on its own."
        )
    if results.get("gold_skills"):
        header, rows = gold_skill_rows(results)
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        lines += ["", specialist_line(results)]
    return "\n".join(lines) + "\n"


def to_csv(results: dict) -> str:
    header, rows = comparison_rows(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


def write_comparison(run_dir: Path, results: dict) -> None:
    """comparison.md and comparison.csv in the run directory."""
    write_atomic(run_dir / "comparison.md", to_markdown(results))
    write_atomic(run_dir / "comparison.csv", to_csv(results))
