"""Benchmark of budgeted assignment at batch scale: ``python -m skillmoe_ray.bench.assignment``.

10,000 instances x 16 experts (seeded), unified scores from random suitability, a budget of 2.5
experts per instance on average and k in [1, 4]. Times ``assign_budgeted`` without capacities,
with per-expert capacities, with a cap of 8 distinct experts, and with activation costs, each as
the best of 3 runs, and prints them beside the goals (measured on a 2-core machine). Timing is
reported, never asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from skillmoe_ray.budget.assignment import Assignment, assign_budgeted, unified_scores

GOALS = {"no capacity": "< 1 s", "capacity": "< 10 s"}  # on a 2-core machine


def best_of(runs: int, solve: Callable[[], Assignment]) -> tuple[float, Assignment]:
    """The fastest of ``runs`` wall-clock timings of ``solve`` and its (last) result."""
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = solve()
        best = min(best, time.perf_counter() - start)
    return best, result


def cases(instances: int, experts: int, seed: int) -> dict[str, Callable[[], Assignment]]:
    """The benchmark cases, each a zero-argument call of ``assign_budgeted``."""
    rng = np.random.default_rng(seed)
    # some experts are stronger overall, so the popular ones run into their capacity
    strength = rng.normal(scale=0.5, size=experts)
    scores = unified_scores(rng.normal(size=(instances, experts)) + strength)
    budget = int(2.5 * instances)
    capacity = np.full(experts, 2 * instances // 10)  # 2,000 each for 10,000 instances
    # loading an expert costs about as much as the score of a few hundred pairs
    activation_cost = rng.uniform(100.0, 1000.0, size=experts)
    common = {"scores": scores, "budget": budget, "k_min": 1, "k_max": 4}
    return {
        "no capacity": lambda: assign_budgeted(**common),
        "capacity": lambda: assign_budgeted(**common, capacity=capacity),
        "max_experts=8": lambda: assign_budgeted(**common, max_experts=8),
        "activation cost": lambda: assign_budgeted(**common, activation_cost=activation_cost),
    }


def main(argv: list[str] | None = None) -> None:
    """Run every case and print a table of seconds, method, exactness, objective and goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"assign_budgeted: {args.instances} instances x {args.experts} experts, "
        "budget 2.5/instance, k in [1, 4]"
    )
    print(f"{'case':<16} {'seconds':>8}  {'method':<18} {'exact':<5} {'objective':>12}  goal (2 cores)")
    for name, solve in cases(args.instances, args.experts, args.seed).items():
        seconds, result = best_of(args.runs, solve)
        print(
            f"{name:<16} {seconds:>8.3f}  {result.method:<18} {result.exact!s:<5} "
            f"{result.objective:>12.3f}  {GOALS.get(name, '-')}"
        )


if __name__ == "__main__":
    main()
