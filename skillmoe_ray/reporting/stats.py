"""Uncertainty of accuracies: standard errors, 95% Wilson intervals, paired bootstrap differences, mean +/-
std over seeds.

A method table over a few hundred questions moves by several points between seeds; these are the
numbers that say whether a difference is real. Pure functions over per-instance correctness.

The standard error sqrt(p (1 - p) / n) is 0 at 15/15: it claims certainty from 15 questions. The Wilson
score interval (scipy's ``binomtest(...).proportion_ci(method="wilson")``) does not: 15/15 gives
[0.796, 1.0]. Every accuracy shown carries both: ``stderr`` and ``ci95: [lo, hi]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000


def standard_error(flags: Sequence[bool]) -> float:
    """Standard error of an accuracy over ``flags``: sqrt(p (1 - p) / n) (0.0 for none)."""
    n = len(flags)
    if not n:
        return 0.0
    p = sum(flags) / n
    return round(math.sqrt(p * (1 - p) / n), 4)


def wilson_interval(flags: Sequence[bool], confidence: float = 0.95) -> list[float]:
    """The Wilson score interval ``[lo, hi]`` of the accuracy over ``flags`` ([0.0, 1.0] for none)."""
    n = len(flags)
    if not n:
        return [0.0, 1.0]
    from scipy.stats import binomtest

    ci = binomtest(int(sum(flags)), n).proportion_ci(confidence_level=confidence, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def accuracy_entry(flags: Sequence[bool]) -> dict:
    """``accuracy``, its ``stderr`` and its 95% Wilson interval ``ci95`` over ``flags`` (every accuracy
    shown carries all three)."""
    n = len(flags)
    return {"accuracy": round(sum(flags) / n, 4) if n else 0.0, "stderr": standard_error(flags),
            "ci95": wilson_interval(flags)}


def shown(entry: Mapping) -> str:
    """An accuracy for people: "0.950 +/- 0.020 [0.908, 0.975]" (standard error, then 95% Wilson interval)."""
    text = f"{entry['accuracy']:.3f}"
    if entry.get("stderr") is not None:
        text += f" +/- {entry['stderr']:.3f}"
    if entry.get("ci95"):
        text += f" [{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]"
    return text


def paired_bootstrap(method: Sequence[bool], reference: Sequence[bool], seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Accuracy difference ``method - reference`` on the same instances and its 95% bootstrap interval.

    Instances are resampled with replacement, the same draw for both (paired), ``resamples`` times;
    the interval is the 2.5th and 97.5th percentile of the resampled differences.
    """
    if len(method) != len(reference):
        raise ValueError(
            f"paired bootstrap needs the same instances: {len(method)} vs {len(reference)} answers"
        )
    if not method:
        return {"difference": 0.0, "low": 0.0, "high": 0.0}
    diff = np.asarray(method, dtype=float) - np.asarray(reference, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "difference": round(float(diff.mean()), 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return round(mean, 4), 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return round(mean, 4), round(math.sqrt(var), 4)


def seeds_summary(runs: Sequence[Mapping]) -> dict[str, dict]:
    """Per method present in every run: mean and std of its accuracy over the runs (seeds), and n runs."""
    names = [m for m in runs[0]["methods"] if all(m in r["methods"] for r in runs)]
    out = {}
    for name in names:
        mean, std = mean_std([r["methods"][name]["accuracy"] for r in runs])
        out[name] = {"mean": mean, "std": std, "runs": len(runs)}
    return out
