"""The comparison table of mode=compare: accuracy per task and cost per method, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from skillmoe_ray.cache import write_atomic

COST_COLUMNS = ("generated_tokens", "gpu_seconds", "activations", "wall_seconds")


def comparison_rows(results: dict) -> tuple[list[str], list[list]]:
    """Header and one row per method: name, accuracy, per-task accuracy, cost columns, note."""
    methods = results["methods"]
    tasks = sorted({t for m in methods.values() for t in m["per_task"]})
    header = ["method", "accuracy", *tasks, *COST_COLUMNS, "note"]
    rows = [
        [name, m["accuracy"], *(m["per_task"].get(t, "") for t in tasks), *(m.get(c) for c in COST_COLUMNS), m.get("note", "")]
        for name, m in methods.items()
    ]
    return header, rows


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
    test_time = [t for t in results["timeline"] if t["stage"] in ("inference", "aggregation") or t["stage"].startswith("moa_")]
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
    header, rows = comparison_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
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
