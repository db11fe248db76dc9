"""Search over which experts may be used at all (DESIGN section 6, budgeted assignment).

A cap on the number of distinct experts, or a cost for activating an expert, couples the columns
of the assignment: the best matrix depends on which experts are switched on. For a fixed set of
allowed experts the remaining problem is one of the exact inner solvers, so the outer problem is
a search over expert sets. Few enough sets are enumerated (exact); otherwise a greedy that adds
the expert with the best marginal gain, followed by a local search over additions, removals and
swaps, gives a good but not provably optimal set.

The search is generic: it sees only ``evaluate(allowed) -> Candidate`` and
``feasible(allowed) -> bool`` over boolean masks of the experts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

IMPROVEMENT_TOL = 1e-9  # relative: a move must gain more than this to count as an improvement
MAX_LOCAL_SEARCH_ROUNDS = 100  # each round makes the single best move; real runs stop far sooner


@dataclass(frozen=True)
class Candidate:
    """A matrix found for one set of allowed experts, with its objective."""

    matrix: np.ndarray
    objective: float


Evaluate = Callable[[np.ndarray], Candidate]
Feasible = Callable[[np.ndarray], bool]


def count_sets(n_experts: int, sizes: Iterable[int]) -> int:
    """How many expert sets of the given sizes there are."""
    return sum(comb(n_experts, size) for size in sizes)


def enumerate_sets(n_experts: int, sizes: Iterable[int], evaluate: Evaluate, feasible: Feasible) -> Candidate:
    """The best candidate over every feasible expert set of the given sizes (exact)."""
    best = None
    for size in sizes:
        for members in combinations(range(n_experts), size):
            allowed = _mask(n_experts, members)
            if not feasible(allowed):
                continue
            candidate = evaluate(allowed)
            if best is None or candidate.objective > best.objective:
                best = candidate
    if best is None:
        raise RuntimeError("expert-set enumeration: no feasible set, though the problem passed the checks")
    return best


def greedy_set(
    n_experts: int,
    max_size: int,
    start: np.ndarray,
    evaluate: Evaluate,
    feasible: Feasible,
    removals: bool = True,
) -> Candidate:
    """A good expert set by greedy addition from ``start``, then best-move local search.

    ``start`` must be feasible. Additions stop when no expert improves the objective or the set
    has ``max_size`` experts; the local search then repeatedly makes the best improving move
    among adding, removing (only if ``removals``: without activation costs a smaller set never
    scores more) and swapping one expert, until none improves.
    """
    cached = _memoized(evaluate)
    current = start.copy()
    best = cached(current)
    while current.sum() < max_size:
        move = _best_move(_additions(current), best, cached, feasible)
        if move is None:
            break
        current, best = move
    for _ in range(MAX_LOCAL_SEARCH_ROUNDS):
        moves = _local_moves(current, max_size, removals)
        move = _best_move(moves, best, cached, feasible)
        if move is None:
            break
        current, best = move
    return best


def _mask(n_experts: int, members: Iterable[int]) -> np.ndarray:
    """Boolean mask of the experts in ``members``."""
    allowed = np.zeros(n_experts, dtype=bool)
    allowed[list(members)] = True
    return allowed


def _memoized(evaluate: Evaluate) -> Evaluate:
    """``evaluate`` with a cache keyed by the set, so local search never solves a set twice."""
    cache: dict[bytes, Candidate] = {}

    def cached(allowed: np.ndarray) -> Candidate:
        key = np.packbits(allowed).tobytes()
        if key not in cache:
            cache[key] = evaluate(allowed)
        return cache[key]

    return cached


def _best_move(
    moves: Iterable[np.ndarray], incumbent: Candidate, evaluate: Evaluate, feasible: Feasible
) -> tuple[np.ndarray, Candidate] | None:
    """The feasible move with the highest objective, if it beats ``incumbent`` by the tolerance."""
    threshold = incumbent.objective + IMPROVEMENT_TOL * (1.0 + abs(incumbent.objective))
    found = None
    for allowed in moves:
        if not feasible(allowed):
            continue
        candidate = evaluate(allowed)
        if candidate.objective > threshold and (found is None or candidate.objective > found[1].objective):
            found = (allowed, candidate)
    return found


def _additions(current: np.ndarray) -> list[np.ndarray]:
    """Every set with one more expert than ``current``."""
    return [_with(current, add=j) for j in np.flatnonzero(~current)]


def _local_moves(current: np.ndarray, max_size: int, removals: bool) -> list[np.ndarray]:
    """Every set one addition, removal (if ``removals``) or swap away from ``current``."""
    inside, outside = np.flatnonzero(current), np.flatnonzero(~current)
    moves = [_with(current, drop=i) for i in inside] if removals else []
    if inside.size < max_size:
        moves += _additions(current)
    moves += [_with(current, drop=i, add=j) for i in inside for j in outside]
    return moves


def _with(current: np.ndarray, drop: int | None = None, add: int | None = None) -> np.ndarray:
    """A copy of ``current`` with one expert removed and/or one added."""
    changed = current.copy()
    if drop is not None:
        changed[drop] = False
    if add is not None:
        changed[add] = True
    return changed
