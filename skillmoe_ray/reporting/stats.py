"""Uncertainty of accuracies: standard errors, paired bootstrap differences, mean +/- std over seeds.

A method table over a few hundred questions moves by several points between seeds; these are the
numbers that say whether a difference is real. Pure functions over per-instance correctness.
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


def paired_bootstrap(method: Sequence[bool], reference: Sequence[bool], seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Accuracy difference ``method - reference`` on the same instances and its 95% bootstrap interval.

    Instances are resampled with replacement, the same draw for both (paired), ``resamples`` times;
    the interval is the 2.5th and 97.5th percentile of the resampled differences.
    """
    if len(method) != len(reference):
        raise ValueError(f"paired bootstrap needs the same instances: {len(method)} vs {len(reference)} answers")
    if not method:
        return {"difference": 0.0, "low": 0.0, "high": 0.0}
    diff = np.asarray(method, dtype=float) - np.asarray(reference, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": round(float(diff.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4)}


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
