"""The one-screen summary printed at the end of a run."""

from __future__ import annotations

from skillmoe_ray.reporting.compare import display_rows, fmt, gold_skill_rows, specialist_line
from skillmoe_ray.reporting.stats import shown


def _all_cached_note(results: dict) -> str:
    """Says so when every stage came from the cache (the method rows then show the cost of computing them)."""
    stages = results.get("stages", {}).values()
    return " (every stage cached; method costs are those of the run that computed them)" if stages and all(
        s.get("cached") for s in stages) else ""


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def _accuracy(entry: dict | None) -> str:
    """"0.950 +/- 0.020 [0.908, 0.975]" (accuracy, standard error, 95% Wilson interval), "-" for no entry."""
    return shown(entry) if entry else "-"


def _truncated(stage: dict) -> str:
    """The share of a stage's outputs cut at ``max_tokens`` ("3 (7.5%)"); "-" for a stage generating none."""
    if not stage.get("requests") or "truncated" not in stage:
        return "-"
    return f"{stage['truncated']} ({stage['truncated'] / stage['requests']:.1%})"


def retry_lines(results: dict) -> list[str]:
    """One line per expert group that succeeded only after retries, with its first error.

    The groups are the timeline's ``retries``.
    """
    lines = []
    for entry in results.get("timeline", []):
        failures = entry.get("retries") or []
        if failures:
            lines.append(f"retried: expert {entry['expert']} in stage {entry['stage']} succeeded after "
                         f"{len(failures)} failed attempt(s); first: {failures[0].get('error', '?')}")
    return lines


def format_summary(results: dict, run_dir: str) -> str:
    """Methods, stages (time, cached), experts (activations, recruitment) in one screen."""
    methods = _table(*display_rows(results))
    stages = _table(
        ["stage", "seconds", "cached", "requests", "generated", "groups run", "cut at max_tokens"],
        [
            [
                name, f"{s['seconds']:.1f}", "yes" if s["cached"] else "no", s.get("requests", "-"),
                s.get("generated", "-"), s.get("expert_groups", 0) - s.get("expert_groups_cached", 0)
                if "expert_groups" in s else "-", _truncated(s),
            ]
            for name, s in results["stages"].items()
        ],
    )
    per_expert = results.get("per_expert", {})
    experts = _table(
        ["expert", "activations", "recruited", "accuracy", "no answer"],
        [
            [e, results["activations"].get(e, 0), per_expert.get(e, {}).get("recruited", 0),
             _accuracy(per_expert.get(e)), per_expert.get(e, {}).get("no_answer", "-")]
            for e in sorted(set(results["activations"]) | set(per_expert))
        ],
    )
    head = (
        f"experiment {results['experiment']}: {results['n_instances']} test / "
        f"{results['n_validation']} validation "
        f"instances, k={results['k']}, aggregator {results['aggregator']['selected']}, "
        f"pipeline {results['wall_seconds']:.1f} s{_all_cached_note(results)}"
    )
    parts = [head, methods]
    if "comparison" in results:
        c = results["comparison"]
        parts.append(
            f"test-time expert activations: {c['activations_actual']} here, "
            f"{c['activations_if_run_separately']} if each method ran on its own"
        )
    if results.get("gold_skills"):
        header, rows = gold_skill_rows(results)
        parts += [_table(header, [[fmt(v) for v in row] for row in rows]), specialist_line(results)]
    retries = retry_lines(results)
    if retries:
        parts.append("\n".join(retries))
    return "\n\n".join([*parts, stages, experts, f"run directory: {run_dir}"])
