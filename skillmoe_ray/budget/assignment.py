"""Budgeted expert assignment: recruitment as one optimization over the whole batch.

DESIGN section 6 (USMoE, arXiv 2503.22996). Instead of drawing k experts per instance, choose a
0/1 instances x experts matrix that maximizes the total score of the chosen pairs, minus a cost
for every expert used at all (its activation: loading it), subject to a global budget of pairs
(possibly a fractional k per instance on average), per-instance bounds [k_min, k_max], and
optionally a capacity per expert and a cap on the number of distinct experts.

Each constraint combination goes to the simplest algorithm that solves it exactly:

- ``top_c``: budget only: the ``budget`` best positive pairs overall.
- ``row_greedy``: per-instance bounds: every row's ``k_min`` best pairs are mandatory, then the
  best remaining positive pairs (each row's next ``k_max - k_min``) up to the budget, globally.
  Exact because within a row the optional gains are sorted, so taking the best gains overall
  never skips a better pair of the same row.
- ``flow_lp``: capacities: a flow LP, integral because its constraint matrix is totally
  unimodular (see ``skillmoe_ray.budget.flow_lp``).
- ``subset_enumeration``: a cap on distinct experts and/or activation costs: the exact inner
  problem (one of the above) solved for every allowed expert set, when there are at most
  ``MAX_ENUMERATED_SETS`` of them.
- ``greedy``: the same with more sets: greedy addition plus local search over expert sets;
  not guaranteed optimal (``exact`` is False).

A capacity no expert can reach (every entry >= number of instances), a cap on distinct experts
no smaller than the pool, and all-zero activation costs are dropped before choosing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skillmoe_ray.budget.checks import AssignmentError, InfeasibleAssignment, Problem, validated_problem
from skillmoe_ray.budget.expert_sets import Candidate, count_sets, enumerate_sets, greedy_set
from skillmoe_ray.budget.flow_lp import solve_flow_lp

__all__ = [
    "METHODS",
    "Assignment",
    "AssignmentError",
    "InfeasibleAssignment",
    "assign_budgeted",
    "assignment_objective",
    "unified_scores",
]

MAX_ENUMERATED_SETS = 4096  # beyond this many expert sets, the greedy search runs instead

METHODS = {
    "top_c": "budget only: the best positive pairs overall (exact)",
    "row_greedy": "per-instance bounds: mandatory k_min per row, then the best optional pairs (exact)",
    "flow_lp": "per-expert capacities: totally unimodular flow LP, dual simplex (exact)",
    "subset_enumeration": "distinct-expert cap or activation costs: every expert set (exact)",
    "greedy": "distinct-expert cap or activation costs, too many sets: greedy + local search (inexact)",
}


@dataclass(frozen=True, eq=False)
class Assignment:
    """The chosen (instance, expert) pairs and how they were found.

    ``matrix[i, j]`` is 1 when expert j answers instance i (read-only). ``objective`` is the
    total score of the chosen pairs minus the activation cost of every expert used at all.
    ``method`` is a key of ``METHODS``; ``exact`` says whether the objective is proven optimal.
    """

    matrix: np.ndarray
    objective: float
    method: str
    exact: bool


def unified_scores(suitability: np.ndarray, alpha: float = 0.5, temperature: float = 1.0) -> np.ndarray:
    """USMoE unified score: ``alpha * expert view + (1 - alpha) * instance view``.

    The expert view asks how well an instance suits an expert compared with the expert's other
    instances: the sigmoid of each column's z-score over instances (0.5 for a constant column).
    The instance view asks how well an expert suits an instance compared with the other experts:
    the row softmax of ``suitability / temperature``.
    """
    values = np.asarray(suitability, dtype=float)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise AssignmentError(
            f"suitability must be a finite 2-D (instances x experts) array, got shape {values.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise AssignmentError(f"alpha must be in [0, 1], got {alpha!r}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise AssignmentError(f"temperature must be a positive number, got {temperature!r}")
    if values.size == 0:
        return np.zeros(values.shape)
    return alpha * _expert_view(values) + (1.0 - alpha) * _row_softmax(values / temperature)


def _expert_view(values: np.ndarray) -> np.ndarray:
    """Sigmoid of every column standardized over instances; a constant column gives z = 0."""
    constant = values.max(axis=0) == values.min(axis=0)  # exact: a std of ~1e-17 is not spread
    std = np.where(constant, 1.0, values.std(axis=0))
    z = np.where(constant, 0.0, (values - values.mean(axis=0)) / std)
    small = np.exp(-np.abs(z))  # in (0, 1]: no overflow for any z
    return np.where(z >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


def _row_softmax(values: np.ndarray) -> np.ndarray:
    """Softmax of every row (shifted by the row maximum so exp cannot overflow)."""
    weights = np.exp(values - values.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def assignment_objective(
    scores: np.ndarray, matrix: np.ndarray, activation_cost: np.ndarray | None = None
) -> float:
    """Total score of the chosen pairs minus the activation cost of every expert used at all."""
    chosen = np.asarray(matrix).astype(bool)
    total = float(np.asarray(scores, dtype=float)[chosen].sum())
    if activation_cost is not None:
        total -= float(np.asarray(activation_cost, dtype=float)[chosen.any(axis=0)].sum())
    return total


def assign_budgeted(
    scores: np.ndarray,
    budget: int,
    k_min: int,
    k_max: int,
    capacity: np.ndarray | None = None,
    max_experts: int | None = None,
    activation_cost: np.ndarray | None = None,
    *,
    max_enumerated_sets: int = MAX_ENUMERATED_SETS,
) -> Assignment:
    """The 0/1 matrix of highest objective under the budget and the optional constraints.

    ``scores`` is instances x experts. At most ``budget`` pairs in all; between ``k_min`` and
    ``k_max`` experts per instance; expert j in at most ``capacity[j]`` instances; at most
    ``max_experts`` distinct experts; ``activation_cost[j]`` paid once if expert j is used.
    A pair with a non-positive score is chosen only when an instance needs it to reach k_min.
    Raises AssignmentError for malformed input and InfeasibleAssignment, naming the
    constraint, when no matrix satisfies them all.
    """
    problem = validated_problem(scores, budget, k_min, k_max, capacity, max_experts, activation_cost)
    inner = _InnerSolver(problem)
    if _needs_set_search(problem):
        best, method, exact = _search_expert_sets(problem, inner, max_enumerated_sets)
        matrix = best.matrix
    else:
        matrix, method, exact = inner.solve(None), inner.method, True
    matrix.flags.writeable = False
    objective = assignment_objective(problem.scores, matrix, problem.activation_cost)
    return Assignment(matrix=matrix, objective=objective, method=method, exact=exact)


class _InnerSolver:
    """Exact solver of the problem without set constraints, on any set of allowed experts."""

    def __init__(self, problem: Problem):
        self.problem = problem
        if problem.capacity is not None:
            self.method = "flow_lp"
        elif problem.k_min == 0 and problem.k_max >= problem.experts:
            self.method = "top_c"
        else:
            self.method = "row_greedy"
            # every row's experts from best to worst, computed once for all expert sets
            self._order = np.argsort(-problem.scores, axis=1, kind="stable")
            self._sorted = np.take_along_axis(problem.scores, self._order, axis=1)

    def solve(self, allowed: np.ndarray | None) -> np.ndarray:
        """The best 0/1 matrix using only the ``allowed`` experts (all when None)."""
        p = self.problem
        if allowed is None:
            allowed = np.ones(p.experts, dtype=bool)
        if self.method == "top_c":
            return _top_c(np.where(allowed, p.scores, 0.0), p.budget)
        if self.method == "row_greedy":
            return _row_greedy(self._order, self._sorted, allowed, p.budget, p.k_min, p.k_max)
        columns = np.flatnonzero(allowed)
        matrix = np.zeros(p.scores.shape, dtype=np.int64)
        matrix[:, columns] = solve_flow_lp(
            p.scores[:, columns], p.budget, p.k_min, p.k_max, p.capacity[columns]
        )
        return _drop_optional_nonpositive(matrix, p.scores, p.k_min)


def _top_entries(values: np.ndarray, candidates: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` highest ``values`` among ``candidates`` (all if fewer)."""
    if candidates.sum() <= count:
        return candidates.copy()
    chosen = np.zeros(values.shape, dtype=bool)
    if count <= 0:
        return chosen
    flat = np.flatnonzero(candidates)
    best = np.argpartition(-values.ravel()[flat], count - 1)[:count]
    chosen.ravel()[flat[best]] = True
    return chosen


def _top_c(scores: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` highest positive pairs overall."""
    return _top_entries(scores, scores > 0, budget).astype(np.int64)


def _row_greedy(
    order: np.ndarray, sorted_scores: np.ndarray, allowed: np.ndarray, budget: int, k_min: int, k_max: int
) -> np.ndarray:
    """Each row's k_min best allowed pairs, then the best optional positive pairs up to the budget.

    ``order``/``sorted_scores`` hold each row's experts best first. A pair is optional when it is
    among its row's allowed ranks k_min + 1 .. k_max and positive.
    """
    in_set = allowed[order]
    rank = np.cumsum(in_set, axis=1)  # 1-based rank among the allowed experts of the row
    mandatory = in_set & (rank <= k_min)
    optional = in_set & (rank > k_min) & (rank <= k_max) & (sorted_scores > 0)
    spare = budget - int(mandatory.sum())
    chosen = mandatory | _top_entries(sorted_scores, optional, spare)
    matrix = np.zeros(order.shape, dtype=np.int64)
    np.put_along_axis(matrix, order, chosen.astype(np.int64), axis=1)
    return matrix


def _drop_optional_nonpositive(matrix: np.ndarray, scores: np.ndarray, k_min: int) -> np.ndarray:
    """Unchoose non-positive pairs a row does not need to reach k_min, worst first.

    The LP may pick zero-score pairs (they cost nothing there); dropping them keeps every
    constraint and the score, and avoids using an expert for nothing.
    """
    droppable = matrix.astype(bool) & (scores <= 0)
    if not droppable.any():
        return matrix
    excess = matrix.sum(axis=1) - k_min
    order = np.argsort(np.where(droppable, scores, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return np.where(droppable & (rank < excess[:, None]), 0, matrix)


def _needs_set_search(problem: Problem) -> bool:
    """Whether the choice of experts is coupled across instances (a cap or activation costs)."""
    coupled = problem.max_experts is not None or problem.activation_cost is not None
    return coupled and problem.rows > 0


def _search_expert_sets(problem: Problem, inner: _InnerSolver, limit: int) -> tuple[Candidate, str, bool]:
    """Best matrix over expert sets: enumerated when few enough, else greedy."""
    most = problem.experts if problem.max_experts is None else problem.max_experts
    # without activation costs a larger set never hurts, so only the largest allowed size counts
    sizes = range(problem.k_min, most + 1) if problem.activation_cost is not None else [most]

    def evaluate(allowed: np.ndarray) -> Candidate:
        matrix = inner.solve(allowed)
        return Candidate(matrix, assignment_objective(problem.scores, matrix, problem.activation_cost))

    def feasible(allowed: np.ndarray) -> bool:
        return _set_feasible(problem, allowed, most)

    if count_sets(problem.experts, sizes) <= limit:
        return enumerate_sets(problem.experts, sizes, evaluate, feasible), "subset_enumeration", True
    start = _greedy_start(problem, most, feasible)
    removals = problem.activation_cost is not None
    return greedy_set(problem.experts, most, start, evaluate, feasible, removals), "greedy", False


def _set_feasible(problem: Problem, allowed: np.ndarray, most: int) -> bool:
    """Whether every instance can get k_min experts from ``allowed`` (within ``most`` experts)."""
    size = int(allowed.sum())
    if size > most or size < problem.k_min:
        return False
    if problem.capacity is None:
        return True
    usable = np.minimum(problem.capacity[allowed], problem.rows).sum()
    return usable >= problem.rows * problem.k_min


def _greedy_start(problem: Problem, most: int, feasible) -> np.ndarray:
    """A feasible expert set to start the greedy from.

    With k_min = 0 the empty set. Otherwise experts in order of column score minus activation
    cost (for a set of exactly k_min experts without capacities this order is optimal: every
    instance takes them all) until the set is feasible, or else the ``most`` experts of largest
    capacity, which the feasibility checks guarantee to be feasible.
    """
    allowed = np.zeros(problem.experts, dtype=bool)
    if problem.k_min == 0:
        return allowed
    cost = 0.0 if problem.activation_cost is None else problem.activation_cost
    for j in np.argsort(-(problem.scores.sum(axis=0) - cost), kind="stable")[:most]:
        allowed[j] = True
        if feasible(allowed):
            return allowed
    allowed[:] = False
    allowed[np.argsort(-problem.capacity, kind="stable")[:most]] = True
    return allowed
