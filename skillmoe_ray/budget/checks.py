"""Input checks for budgeted assignment (``skillmoe_ray.budget.assignment``).

Malformed input (a wrong shape, a negative count, a fractional budget) raises
``AssignmentError``; well-formed input that no 0/1 matrix can satisfy raises
``InfeasibleAssignment``. Both name the argument or constraint at fault. The checks are exact:
input that passes them has a feasible matrix, so the solvers never meet an infeasible problem.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from skillmoe_ray.errors import SkillMoEError


class AssignmentError(SkillMoEError):
    """An argument of a budgeted assignment is malformed (shape, type, sign)."""


class InfeasibleAssignment(AssignmentError):
    """No 0/1 matrix satisfies the assignment's constraints; the message names the one at fault."""


@dataclass(frozen=True)
class Problem:
    """A checked assignment problem, with constraints that cannot bind dropped (set to None).

    ``k_max`` is at most the number of experts; ``capacity`` is None unless some expert's
    capacity is below the number of instances; ``max_experts`` is None unless below the number
    of experts; ``activation_cost`` is None when all zero.
    """

    scores: np.ndarray
    budget: int
    k_min: int
    k_max: int
    capacity: np.ndarray | None
    max_experts: int | None
    activation_cost: np.ndarray | None

    @property
    def rows(self) -> int:
        """Number of instances."""
        return self.scores.shape[0]

    @property
    def experts(self) -> int:
        """Number of experts."""
        return self.scores.shape[1]


def validated_problem(scores, budget, k_min, k_max, capacity, max_experts, activation_cost) -> Problem:
    """Check every argument and the feasibility of their combination; normalize them."""
    matrix = _score_matrix(scores)
    rows, experts = matrix.shape
    budget, k_min, k_max = _count("budget", budget), _count("k_min", k_min), _count("k_max", k_max)
    caps = None if capacity is None else _per_expert("capacity", capacity, experts, integral=True)
    cost = None if activation_cost is None else _per_expert("activation_cost", activation_cost, experts)
    most = None if max_experts is None else _count("max_experts", max_experts)
    _check_bounds(k_min, k_max, experts, most)
    _check_supply(rows, budget, k_min, caps, most)
    return Problem(
        scores=matrix,
        budget=budget,
        k_min=k_min,
        k_max=min(k_max, experts),
        capacity=caps if caps is not None and np.any(caps < rows) else None,
        max_experts=most if most is not None and most < experts else None,
        activation_cost=cost if cost is not None and np.any(cost > 0) else None,
    )


def _score_matrix(scores) -> np.ndarray:
    """``scores`` as a finite float instances x experts array."""
    try:
        matrix = np.array(scores, dtype=float)
    except (TypeError, ValueError) as err:
        raise AssignmentError(f"scores must be a numeric instances x experts array: {err}") from None
    if matrix.ndim != 2:
        raise AssignmentError(f"scores must be a 2-D (instances x experts) array, got shape {matrix.shape}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        i, j = bad[0]
        raise AssignmentError(f"scores must be finite; scores[{i}, {j}] = {matrix[i, j]}")
    return matrix


def _count(name: str, value) -> int:
    """A non-negative whole number (an int, or a float with no fractional part)."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise AssignmentError(f"{name} must be a non-negative whole number, got {value!r}")
    return int(value)


def _per_expert(name: str, values, experts: int, integral: bool = False) -> np.ndarray:
    """A finite, non-negative array with one entry per expert (whole numbers if ``integral``)."""
    try:
        array = np.array(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise AssignmentError(f"{name} must be a numeric array with one entry per expert: {err}") from None
    if array.shape != (experts,):
        raise AssignmentError(f"{name} must have shape ({experts},), one entry per expert; got {array.shape}")
    for j, value in enumerate(array):
        if not np.isfinite(value) or value < 0 or (integral and not value.is_integer()):
            kind = "non-negative whole numbers" if integral else "finite and non-negative"
            raise AssignmentError(f"{name} must be {kind}; {name}[{j}] = {value}")
    return array.astype(np.int64) if integral else array


def _check_bounds(k_min: int, k_max: int, experts: int, most: int | None) -> None:
    """Per-instance bounds that contradict each other, the pool or the cap on distinct experts."""
    if k_min > k_max:
        raise InfeasibleAssignment(f"k_min={k_min} > k_max={k_max}: no instance can satisfy both bounds")
    if k_min > experts:
        raise InfeasibleAssignment(
            f"k_min={k_min} > number of experts={experts}: an instance cannot get k_min distinct experts"
        )
    if most is not None and most < k_min:
        raise InfeasibleAssignment(
            f"max_experts={most} < k_min={k_min}: an instance needs k_min distinct experts"
        )


def _check_supply(rows: int, budget: int, k_min: int, caps: np.ndarray | None, most: int | None) -> None:
    """Whether the budget and the capacities can give every instance k_min experts.

    A column serves at most ``min(capacity, rows)`` instances (each pair at most once); with
    equal demand k_min per row, a 0/1 matrix exists exactly when those usable capacities sum to
    at least rows * k_min (Gale-Ryser), counting only the ``max_experts`` largest under a cap.
    """
    need = rows * k_min
    if budget < need:
        raise InfeasibleAssignment(
            f"budget={budget} < instances x k_min = {rows} x {k_min} = {need}: the budget cannot cover k_min"
        )
    if caps is None or need == 0:
        return
    usable = np.sort(np.minimum(caps, rows))[::-1]
    if usable.sum() < need:
        raise InfeasibleAssignment(
            f"capacity: total usable capacity {usable.sum()} (each entry capped at {rows} instances) "
            f"< instances x k_min = {need}"
        )
    if most is not None and usable[:most].sum() < need:
        raise InfeasibleAssignment(
            f"capacity with max_experts={most}: the {most} largest capacities give {usable[:most].sum()} "
            f"< instances x k_min = {need}"
        )
