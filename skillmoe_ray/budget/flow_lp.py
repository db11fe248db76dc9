"""Budgeted assignment with per-expert capacities as a flow LP (DESIGN section 6).

Choosing (instance, expert) pairs with k_min <= picks per instance <= k_max, at most capacity[j]
picks of expert j and at most ``budget`` picks in all is a flow problem: source -> budget ->
instances -> experts -> sink. Its constraint matrix (instance rows, expert rows, one budget row)
is totally unimodular, so every vertex of the LP relaxation is a 0/1 matrix and the dual simplex,
which ends on a vertex, solves the integer problem exactly.

The full LP has instances x experts variables; the dual simplex on 10,000 x 16 takes over 10 s.
Almost every optimal pair is among its instance's best few experts, so the LP is first solved on
each instance's top ``k_max + 1`` experts and then priced against all pairs with the LP duals:
a pair left out whose reduced gain is positive is added and the LP solved again. When no pair
has a positive reduced gain, the restricted optimum is optimal for the full LP (LP duality), so
this column generation loses no exactness.

Exact means up to the solver's optimality tolerance (``LP_OPTIONS``, 1e-9): pairs whose scores
differ by less than that may be exchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

INTEGRALITY_TOL = 1e-6  # a vertex of the TU polytope is 0/1 up to the solver's round-off
PRICING_TOL = 1e-9  # relative: a left-out pair enters when its reduced gain exceeds this
LP_METHOD = "highs-ds"  # a simplex method, so the solution is a vertex (integral)
# HiGHS's default optimality tolerance (1e-7) would let pairs 1e-7 better go unchosen
LP_OPTIONS = {"dual_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9}


def solve_flow_lp(
    scores: np.ndarray, budget: int, k_min: int, k_max: int, capacity: np.ndarray
) -> np.ndarray:
    """The 0/1 matrix of maximum total score under the budget, row bounds and column capacities.

    The caller has checked that the problem is feasible. Raises RuntimeError if the solver
    disagrees or returns a fractional or infeasible matrix, both of which would be a bug.
    """
    rows, experts = scores.shape
    k_max = min(k_max, experts)
    if rows == 0 or k_max == 0:
        return np.zeros(scores.shape, dtype=np.int64)
    width = min(experts, k_max + 1)
    candidates = _top_per_row(scores, width)
    while True:
        result = _solve_restricted(scores, candidates, budget, k_min, k_max, capacity)
        if result is None:  # the top ``width`` per row cannot meet k_min under the capacities
            if candidates.all():
                raise RuntimeError("flow LP: the solver found a problem infeasible that passed the checks")
            width = min(experts, 2 * width)
            candidates |= _top_per_row(scores, width)
            continue
        values, gains = result
        entering = (gains > PRICING_TOL * (1.0 + np.abs(scores).max())) & ~candidates
        if not entering.any():
            break
        candidates |= entering
    matrix = _integral_matrix(values, candidates)
    _verify_feasible(matrix, budget, k_min, k_max, capacity)
    return matrix


def _top_per_row(scores: np.ndarray, width: int) -> np.ndarray:
    """Boolean mask of each row's ``width`` highest-scoring columns."""
    mask = np.zeros(scores.shape, dtype=bool)
    if width >= scores.shape[1]:
        mask[:] = True
        return mask
    best = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    np.put_along_axis(mask, best, True, axis=1)
    return mask


class _Block(NamedTuple):
    """A group of LP constraints, and whose dual price each of its marginals is part of."""

    equality: bool
    matrix: sp.csr_array
    rhs: np.ndarray
    priced: str  # "row", "col" or "budget"
    index: np.ndarray  # the row or column of each constraint
    sign: float  # the pair's coefficient in it (-1 for a lower row bound written -sum <= -k_min)


def _solve_restricted(
    scores: np.ndarray,
    candidates: np.ndarray,
    budget: int,
    k_min: int,
    k_max: int,
    capacity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Solve the LP over the candidate pairs only.

    Returns the candidates' values and every pair's reduced gain (how much the objective would
    rise per unit of that pair entering at the current duals), or None if infeasible.
    """
    import scipy.sparse as sp  # scipy costs ~0.3 s to import: only when an LP is solved
    from scipy.optimize import linprog

    rows, experts = scores.shape
    flat = np.flatnonzero(candidates)
    row_of, col_of = np.divmod(flat, experts)
    blocks = _constraint_blocks(row_of, col_of, rows, experts, budget, k_min, k_max, capacity)
    ub = [b for b in blocks if not b.equality]
    eq = [b for b in blocks if b.equality]
    res = linprog(
        -scores.ravel()[flat],
        A_ub=sp.vstack([b.matrix for b in ub]).tocsc() if ub else None,
        b_ub=np.concatenate([b.rhs for b in ub]) if ub else None,
        A_eq=sp.vstack([b.matrix for b in eq]).tocsc() if eq else None,
        b_eq=np.concatenate([b.rhs for b in eq]) if eq else None,
        bounds=(0, 1),
        method=LP_METHOD,
        options=LP_OPTIONS,
    )
    if res.status == 2:
        return None
    if res.status != 0:
        raise RuntimeError(f"flow LP: HiGHS stopped with status {res.status}: {res.message}")
    prices = _dual_prices(ub, res.ineqlin.marginals, rows, experts)
    for name, price in _dual_prices(eq, res.eqlin.marginals if eq else None, rows, experts).items():
        prices[name] += price
    return res.x, scores + prices["row"][:, None] + prices["col"][None, :] + prices["budget"][0]


def _constraint_blocks(
    row_of: np.ndarray,
    col_of: np.ndarray,
    rows: int,
    experts: int,
    budget: int,
    k_min: int,
    k_max: int,
    capacity: np.ndarray,
) -> list[_Block]:
    """The LP's constraints over the pairs (row_of[v], col_of[v]): row bounds, capacities, budget.

    Bounds that cannot bind (k_max >= experts, k_min = 0, capacity >= rows) are left out.
    """
    import scipy.sparse as sp

    n = row_of.size
    ones = np.ones(n)
    by_row = sp.csr_array((ones, (row_of, np.arange(n))), shape=(rows, n))
    all_rows = np.arange(rows)
    blocks = []
    if k_min == k_max:
        blocks.append(_Block(True, by_row, np.full(rows, float(k_min)), "row", all_rows, 1.0))
    else:
        if k_max < experts:
            blocks.append(_Block(False, by_row, np.full(rows, float(k_max)), "row", all_rows, 1.0))
        if k_min > 0:
            blocks.append(_Block(False, -by_row, np.full(rows, -float(k_min)), "row", all_rows, -1.0))
    binding = np.flatnonzero(capacity < rows)
    if binding.size:
        slot = np.full(experts, -1)
        slot[binding] = np.arange(binding.size)
        keep = slot[col_of] >= 0
        by_col = sp.csr_array(
            (ones[keep], (slot[col_of[keep]], np.flatnonzero(keep))), shape=(binding.size, n)
        )
        blocks.append(_Block(False, by_col, capacity[binding].astype(float), "col", binding, 1.0))
    total = sp.csr_array(np.ones((1, n)))
    blocks.append(_Block(False, total, np.array([float(budget)]), "budget", np.zeros(1, dtype=int), 1.0))
    return blocks


def _dual_prices(
    blocks: list[_Block], marginals: np.ndarray | None, rows: int, experts: int
) -> dict[str, np.ndarray]:
    """Per-row, per-column and budget prices from the marginals of ``blocks`` (stacked in order).

    A marginal is d(objective)/d(rhs) of the minimization; a pair's reduced gain in the
    maximization is its score plus the marginals of its constraints times its coefficients.
    """
    prices = {"row": np.zeros(rows), "col": np.zeros(experts), "budget": np.zeros(1)}
    offset = 0
    for block in blocks:
        part = marginals[offset : offset + block.rhs.size]
        offset += block.rhs.size
        prices[block.priced][block.index] += block.sign * part
    return prices


def _integral_matrix(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Round the LP solution into a 0/1 matrix, refusing a fractional one."""
    rounded = np.rint(values)
    worst = float(np.abs(values - rounded).max(initial=0.0))
    if worst > INTEGRALITY_TOL:
        raise RuntimeError(f"flow LP: the vertex is not integral (off by {worst:.3g}); the LP is not TU")
    matrix = np.zeros(candidates.shape, dtype=np.int64)
    matrix.ravel()[np.flatnonzero(candidates)] = rounded.astype(np.int64)
    return matrix


def _verify_feasible(matrix: np.ndarray, budget: int, k_min: int, k_max: int, capacity: np.ndarray) -> None:
    """Check the rounded matrix against every constraint (a failure is a solver bug)."""
    per_row = matrix.sum(axis=1)
    problems = []
    if per_row.min(initial=k_min) < k_min or per_row.max(initial=0) > k_max:
        problems.append(f"picks per row outside [{k_min}, {k_max}]")
    if np.any(matrix.sum(axis=0) > capacity):
        problems.append("capacity exceeded")
    if matrix.sum() > budget:
        problems.append(f"more than budget={budget} pairs")
    if problems:
        raise RuntimeError("flow LP: rounded solution infeasible: " + "; ".join(problems))
