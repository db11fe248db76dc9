"""The paper's Table 1 shape over seeds: per method, accuracy mean +/- std over seeds per task and on average,
and the paired difference to Symbolic-MoE with its 95% interval. Pure functions over each seed's per-question
correctness (``final_answers.jsonl`` and ``results.json`` of a ``mode=compare`` run); the launcher is
:mod:`skillmoe_ray.reporting.lab_table`.

- Per task: each seed's accuracy on the task's questions; the table shows their mean and sample standard
  deviation over seeds.
- Average: each seed's mean of its task accuracies (the paper's "Avg." column; with tasks of equal size, as
  in the labs, it is the accuracy over all questions), then mean +/- std over seeds.
- Difference to Symbolic-MoE: the method's correctness minus symbolic_moe's on the same question, over every
  (seed, question) pair of all seeds; its 95% interval is a paired bootstrap of those pairs (10,000
  resamples of pairs with replacement, the 2.5th and 97.5th percentiles: :func:`stats.paired_bootstrap`).
  Seeds draw their own questions (the lab generates them from the seed), so the pairs are independent
  questions; the interval says whether the difference is one the 3 x n questions can tell.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from skillmoe_ray.errors import DataError
from skillmoe_ray.reporting import stats

REFERENCE = "symbolic_moe"
BOOTSTRAP_SEED = 0  # the table's interval is the same on every call over the same runs


@dataclass(frozen=True)
class SeedRun:
    """One seed's compare run as the table reads it: which task each question is of, and each method's
    correctness per question (methods in results.json's order)."""

    seed: int
    tasks: dict[str, str]
    correct: dict[str, dict[str, bool]]


@dataclass(frozen=True)
class MethodRow:
    """One method's row: (mean, std) over seeds per task and on average; its difference to the reference."""

    method: str
    per_task: dict[str, tuple[float, float]]
    average: tuple[float, float]
    vs_reference: dict | None


@dataclass(frozen=True)
class Table:
    """The whole table and what it was made from."""

    experiment: str
    seeds: list[int]
    tasks: list[str]
    questions_per_seed: list[int]
    rows: list[MethodRow]


def seed_run(results: Mapping, final_answers: Sequence[Mapping]) -> SeedRun:
    """A :class:`SeedRun` from a compare run's results.json content and its final_answers.jsonl rows."""
    methods = list(results["methods"])
    tasks = {row["id"]: row["task"] for row in final_answers}
    correct: dict[str, dict[str, bool]] = {m: {} for m in methods}
    for row in final_answers:
        for m in methods:
            flag = row["correct"].get(m)
            if flag is None:
                raise DataError(f"seed {results.get('seed')}: no correctness of method {m} for question "
                                f"{row['id']} in final_answers.jsonl")
            correct[m][row["id"]] = bool(flag)
    return SeedRun(int(results["seed"]), tasks, correct)


def task_accuracies(run: SeedRun, method: str) -> dict[str, float]:
    """The method's accuracy per task in one seed."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for qid, task in run.tasks.items():
        groups[task].append(run.correct[method][qid])
    return {task: sum(flags) / len(flags) for task, flags in sorted(groups.items())}


def paired_flags(runs: Sequence[SeedRun], method: str, reference: str = REFERENCE) -> tuple[list, list]:
    """The method's and the reference's correctness on every (seed, question) pair, in the same order."""
    ours, theirs = [], []
    for run in runs:
        for qid in run.tasks:
            ours.append(run.correct[method][qid])
            theirs.append(run.correct[reference][qid])
    return ours, theirs


def method_row(runs: Sequence[SeedRun], method: str, tasks: Sequence[str]) -> MethodRow:
    """One method's mean +/- std per task and on average, and its paired difference to the reference."""
    per_seed = [task_accuracies(run, method) for run in runs]
    per_task = {t: stats.mean_std([acc[t] for acc in per_seed]) for t in tasks}
    average = stats.mean_std([sum(acc[t] for t in tasks) / len(tasks) for acc in per_seed])
    vs = None
    if method != REFERENCE:
        vs = stats.paired_bootstrap(*paired_flags(runs, method), seed=BOOTSTRAP_SEED)
    return MethodRow(method, per_task, average, vs)


def build(experiment: str, runs: Sequence[SeedRun]) -> Table:
    """The table over ``runs`` (one per seed): the methods every run has, in the first run's order."""
    if not runs:
        raise DataError("no runs to tabulate")
    methods = [m for m in runs[0].correct if all(m in r.correct for r in runs)]
    if REFERENCE not in methods:
        raise DataError(f"every run needs the method {REFERENCE} (the table's reference); add it to "
                        "compare.methods")
    tasks = sorted({t for r in runs for t in r.tasks.values()})
    missing = [(r.seed, t) for r in runs for t in tasks if t not in r.tasks.values()]
    if missing:
        raise DataError(f"seed {missing[0][0]} has no question of task {missing[0][1]}")
    rows = [method_row(runs, m, tasks) for m in methods]
    return Table(experiment, [r.seed for r in runs], tasks, [len(r.tasks) for r in runs], rows)


def mean_std_cell(value: tuple[float, float]) -> str:
    return f"{value[0]:.3f} +/- {value[1]:.3f}"


def difference_cell(vs: Mapping | None) -> str:
    if vs is None:
        return "-"
    return f"{vs['difference']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]"


def to_markdown(table: Table) -> str:
    """The table in Markdown, with a line above saying what it is and a line below saying how to read it."""
    seeds = ", ".join(map(str, table.seeds))
    sizes = sorted(set(table.questions_per_seed))
    each = f"{sizes[0]} test questions each" if len(sizes) == 1 else \
        f"{', '.join(map(str, table.questions_per_seed))} test questions"
    header = ["method", *table.tasks, "average", f"vs {REFERENCE} [95% CI]"]
    lines = [f"{table.experiment}, mode=compare, seeds {seeds} ({each}): accuracy mean +/- std over seeds",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [row.method, *(mean_std_cell(row.per_task[t]) for t in table.tasks),
                 mean_std_cell(row.average), difference_cell(row.vs_reference)]
        lines.append("| " + " | ".join(cells) + " |")
    pairs = sum(table.questions_per_seed)
    lines += ["", f"std: sample standard deviation over the {len(table.seeds)} seeds; average: the mean of "
              f"the task columns per seed. vs {REFERENCE}: the method's accuracy minus {REFERENCE}'s over "
              f"all {pairs} (seed, question) pairs, [95% paired bootstrap interval of those pairs]."]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The table as CSV: mean and std columns per task and for the average, the difference and its bounds."""
    header = ["method"]
    for name in (*table.tasks, "average"):
        header += [f"{name}_mean", f"{name}_std"]
    header += [f"vs_{REFERENCE}", "vs_low", "vs_high", "seeds", "pairs"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    seeds = " ".join(map(str, table.seeds))
    for row in table.rows:
        values: list = [row.method]
        for cell in (*(row.per_task[t] for t in table.tasks), row.average):
            values += list(cell)
        vs = row.vs_reference
        values += [vs["difference"], vs["low"], vs["high"]] if vs else ["", "", ""]
        writer.writerow([*values, seeds, sum(table.questions_per_seed)])
    return buffer.getvalue()
