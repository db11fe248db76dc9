"""Budgeted expert assignment (DESIGN section 6, USMoE): exactness against brute force, methods, errors.

The unified score builder has its own file: test_unified_scores.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skillmoe_ray.budget.assignment import (
    METHODS,
    Assignment,
    AssignmentError,
    InfeasibleAssignment,
    assign_budgeted,
    assignment_objective,
)
from skillmoe_ray.errors import SkillMoEError

MAX_BRUTE_FORCE_MATRICES = 2**17  # keeps each brute force under ~0.1 s
EXAMPLES = 100  # per constraint combination; the whole file runs in well under 30 s on 2 cores

# --- brute force ---------------------------------------------------------------------------------


def row_patterns(experts: int, k_min: int, k_max: int) -> np.ndarray:
    """Every 0/1 row with between k_min and k_max ones."""
    rows = [p for p in itertools.product((0, 1), repeat=experts) if k_min <= sum(p) <= k_max]
    return np.array(rows, dtype=np.int64).reshape(len(rows), experts)


def brute_force(scores, budget, k_min, k_max, capacity=None, max_experts=None, cost=None) -> float | None:
    """Optimum over every 0/1 matrix whose rows respect [k_min, k_max] (None if none is feasible).

    Row by row, every combination of row patterns is kept (with its score and column counts);
    the other constraints and the activation cost are applied to the complete matrices.
    """
    n_rows, experts = scores.shape
    patterns = row_patterns(experts, k_min, k_max)
    totals, counts = np.zeros(1), np.zeros((1, experts), dtype=np.int64)
    for i in range(n_rows):
        totals = (totals[:, None] + (patterns @ scores[i])[None, :]).ravel()
        counts = (counts[:, None, :] + patterns[None, :, :]).reshape(-1, experts)
    used = counts > 0
    ok = counts.sum(axis=1) <= budget
    if capacity is not None:
        ok &= (counts <= np.asarray(capacity)).all(axis=1)
    if max_experts is not None:
        ok &= used.sum(axis=1) <= max_experts
    if cost is not None:
        totals = totals - used @ np.asarray(cost, dtype=float)
    return float(totals[ok].max()) if ok.any() else None


def expected_method(problem: dict) -> str:
    """The method the module documentation promises for this constraint combination."""
    scores, experts = problem["scores"], problem["scores"].shape[1]
    cost, most, caps = problem.get("activation_cost"), problem.get("max_experts"), problem.get("capacity")
    if (cost is not None and np.any(np.asarray(cost) > 0)) or (most is not None and most < experts):
        return "subset_enumeration"
    if caps is not None and np.any(np.asarray(caps) < scores.shape[0]):
        return "flow_lp"
    if problem["k_min"] == 0 and problem["k_max"] >= experts:
        return "top_c"
    return "row_greedy"


# --- strategies ----------------------------------------------------------------------------------

SCORES = st.one_of(
    st.integers(-3, 5).map(float),  # ties galore
    st.floats(-3, 5, allow_nan=False, allow_infinity=False),
)
# The flow LP is exact up to HiGHS's optimality tolerance (1e-9): pairs whose scores differ by
# less may be swapped. Its scores are floats with three decimals.
LP_SCORES = st.one_of(
    st.integers(-3, 5).map(float),
    st.floats(-3, 5, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3)),
)


@st.composite
def problems(draw, bounds=True, capacity=False, max_experts=False, cost=False) -> dict:
    """A tiny assignment problem (at most 6 x 4) with the requested constraints."""
    experts = draw(st.integers(1, 4))
    if bounds:
        k_min = draw(st.integers(0, experts))
        k_max = draw(st.integers(k_min, experts + 1))  # k_max above the pool is clipped
    else:
        k_min, k_max = 0, experts
    n_patterns = len(row_patterns(experts, k_min, min(k_max, experts)))
    max_rows = max(r for r in range(1, 7) if r == 1 or n_patterns**r <= MAX_BRUTE_FORCE_MATRICES)
    n_rows = draw(st.integers(1, max_rows))
    values = LP_SCORES if capacity else SCORES
    scores = np.array(draw(st.lists(values, min_size=n_rows * experts, max_size=n_rows * experts)))
    problem = {
        "scores": scores.reshape(n_rows, experts),
        "budget": draw(st.integers(max(0, n_rows * k_min - 1), n_rows * experts + 1)),
        "k_min": k_min,
        "k_max": k_max,
    }
    if capacity:
        problem["capacity"] = draw(st.lists(st.integers(0, n_rows + 1), min_size=experts, max_size=experts))
    if max_experts:
        problem["max_experts"] = draw(st.integers(0, experts))
    if cost:
        costs = st.one_of(st.integers(0, 6).map(float), st.floats(0, 6, allow_nan=False))
        problem["activation_cost"] = draw(st.lists(costs, min_size=experts, max_size=experts))
    return problem


COMBINATIONS = {
    "budget": {"bounds": False},
    "row_bounds": {},
    "capacity": {"capacity": True},
    "max_experts": {"max_experts": True},
    "activation_cost": {"cost": True},
    "capacity+max_experts": {"capacity": True, "max_experts": True},
    "capacity+activation_cost": {"capacity": True, "cost": True},
    "all": {"capacity": True, "max_experts": True, "cost": True},
}
SET_SEARCH_COMBINATIONS = [
    name for name in COMBINATIONS if "max_experts" in name or "cost" in name or name == "all"
]


def solve_and_brute_force(problem: dict, **options) -> tuple[Assignment | None, float | None]:
    """The assignment (None if InfeasibleAssignment) and the brute-force optimum (None if infeasible)."""
    best = brute_force(
        problem["scores"],
        problem["budget"],
        problem["k_min"],
        min(problem["k_max"], problem["scores"].shape[1]),
        problem.get("capacity"),
        problem.get("max_experts"),
        problem.get("activation_cost"),
    )
    try:
        return assign_budgeted(**problem, **options), best
    except InfeasibleAssignment:
        return None, best


def check_feasible(problem: dict, result: Assignment) -> None:
    """Every constraint holds, and non-positive pairs appear only in rows at k_min."""
    m, scores = result.matrix, problem["scores"]
    assert m.shape == scores.shape and set(np.unique(m)) <= {0, 1}
    per_row = m.sum(axis=1)
    assert (per_row >= problem["k_min"]).all() and (per_row <= problem["k_max"]).all()
    assert m.sum() <= problem["budget"]
    if problem.get("capacity") is not None:
        assert (m.sum(axis=0) <= np.asarray(problem["capacity"])).all()
    if problem.get("max_experts") is not None:
        assert m.any(axis=0).sum() <= problem["max_experts"]
    above_k_min = per_row > problem["k_min"]
    assert (scores[above_k_min][m[above_k_min] == 1] > 0).all()


def recomputed_objective(problem: dict, matrix: np.ndarray) -> float:
    """Objective of ``matrix`` computed from scratch: chosen scores minus costs of used experts."""
    total = sum(problem["scores"][i, j] for i, j in zip(*np.nonzero(matrix)))
    cost = problem.get("activation_cost")
    if cost is not None:
        total -= sum(cost[j] for j in range(matrix.shape[1]) if matrix[:, j].any())
    return total


# --- exactness: every constraint combination -----------------------------------------------------


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_assignment_is_feasible_and_optimal(combination):
    """Feasible, objective as reported, equal to brute force; infeasible exactly when brute force is."""

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(problem=problems(**COMBINATIONS[combination]))
    def check(problem):
        result, best = solve_and_brute_force(problem)
        assert (result is None) == (best is None), (
            f"solver feasible: {result is not None}, brute force: {best}"
        )
        if result is None:
            return
        check_feasible(problem, result)
        assert result.objective == pytest.approx(recomputed_objective(problem, result.matrix), abs=1e-9)
        assert result.exact
        assert result.objective == pytest.approx(best, abs=1e-9)
        assert result.method == expected_method(problem)

    check()


@pytest.mark.parametrize("combination", SET_SEARCH_COMBINATIONS)
def test_greedy_expert_sets_are_feasible_and_bounded_by_optimum(combination):
    """With enumeration switched off, the greedy is feasible and never beats the true optimum."""

    @settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(problem=problems(**COMBINATIONS[combination]))
    def check(problem):
        result, best = solve_and_brute_force(problem, max_enumerated_sets=0)
        assert (result is None) == (best is None)
        if result is None:
            return
        check_feasible(problem, result)
        assert result.objective == pytest.approx(recomputed_objective(problem, result.matrix), abs=1e-9)
        if result.method == "greedy":
            assert not result.exact
            assert result.objective <= best + 1e-9
        else:  # the cap or the costs were dropped as unable to bind
            assert result.exact and result.objective == pytest.approx(best, abs=1e-9)

    check()


# --- the flow LP beyond each instance's top k_max + 1 experts ------------------------------------


def test_flow_lp_prices_in_pairs_outside_the_first_candidates():
    """Three instances want experts 0 and 1 (capacity 1 each): the third must get expert 2.

    The first LP sees only each row's top k_max + 1 = 2 experts; pricing must bring expert 2 in.
    """
    scores = np.array([[10.0, 9.0, 8.0, 0.0]] * 3)
    result = assign_budgeted(scores, budget=3, k_min=0, k_max=1, capacity=[1, 1, 1, 1])
    assert result.method == "flow_lp" and result.exact
    assert result.objective == 27.0
    assert result.matrix.sum(axis=0).tolist() == [1, 1, 1, 0]


def test_flow_lp_widens_candidates_when_k_min_cannot_be_met_among_them():
    """With k_min = 1, four rows and capacity 1 each, the top-2 candidates are infeasible."""
    scores = np.array([[10.0, 9.0, 8.0, -1.0]] * 4)
    result = assign_budgeted(scores, budget=4, k_min=1, k_max=1, capacity=[1, 1, 1, 1])
    assert result.objective == 26.0
    assert result.matrix.sum(axis=0).tolist() == [1, 1, 1, 1]


def test_flow_lp_drops_zero_score_pairs_it_does_not_need():
    """Zero-score pairs cost the LP nothing; the result leaves them out above k_min."""
    scores = np.array([[0.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    result = assign_budgeted(scores, budget=6, k_min=1, k_max=3, capacity=[1, 1, 1])
    assert result.matrix.tolist() == [[0, 0, 1], [0, 1, 0]]


# --- methods -------------------------------------------------------------------------------------

SCORES_3x3 = np.array([[3.0, 1.0, -1.0], [2.0, 5.0, 1.0], [-2.0, 4.0, 6.0]])


@pytest.mark.parametrize(
    ("options", "method", "exact"),
    [
        ({"k_min": 0, "k_max": 3}, "top_c", True),
        ({"k_min": 0, "k_max": 9}, "top_c", True),
        ({"k_min": 1, "k_max": 2}, "row_greedy", True),
        ({"k_min": 1, "k_max": 2, "capacity": [1, 1, 1]}, "flow_lp", True),
        ({"k_min": 1, "k_max": 2, "capacity": [3, 3, 5]}, "row_greedy", True),  # cannot bind: dropped
        ({"k_min": 1, "k_max": 2, "max_experts": 2}, "subset_enumeration", True),
        ({"k_min": 1, "k_max": 2, "max_experts": 3}, "row_greedy", True),  # whole pool: dropped
        ({"k_min": 1, "k_max": 2, "activation_cost": [1.0, 0.0, 2.0]}, "subset_enumeration", True),
        ({"k_min": 1, "k_max": 2, "activation_cost": [0.0, 0.0, 0.0]}, "row_greedy", True),  # dropped
        ({"k_min": 1, "k_max": 2, "max_experts": 2, "max_enumerated_sets": 2}, "greedy", False),
        ({"k_min": 0, "k_max": 3, "activation_cost": [1, 1, 1], "max_enumerated_sets": 7}, "greedy", False),
        (
            {"k_min": 0, "k_max": 3, "activation_cost": [1, 1, 1], "max_enumerated_sets": 8},
            "subset_enumeration",
            True,
        ),
    ],
)
def test_method_reported_as_documented(options, method, exact):
    """Each constraint combination runs (and reports) the algorithm the module docstring names."""
    result = assign_budgeted(SCORES_3x3, budget=5, **options)
    assert (result.method, result.exact) == (method, exact)
    assert result.method in METHODS


def test_methods_are_the_documented_five():
    """METHODS documents exactly the algorithms assign_budgeted can report."""
    assert set(METHODS) == {"top_c", "row_greedy", "flow_lp", "subset_enumeration", "greedy"}


def test_top_c_takes_the_best_positive_pairs_only():
    """Budget 5 of 7 positive pairs: the five best, and never a negative one."""
    result = assign_budgeted(SCORES_3x3, budget=5, k_min=0, k_max=3)
    assert result.matrix.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert result.objective == 20.0


def test_row_greedy_takes_negative_pairs_only_to_reach_k_min():
    """Row 0 must take two experts, all negative: its two best. Row 1 adds a third only if positive."""
    scores = np.array([[-1.0, -3.0, -2.0], [4.0, 3.0, -1.0]])
    result = assign_budgeted(scores, budget=4, k_min=2, k_max=3)
    assert result.matrix.tolist() == [[1, 0, 1], [1, 1, 0]]
    assert result.objective == -3.0 + 7.0


def test_activation_cost_can_leave_an_expert_unused():
    """Expert 2 would add 1 to one instance but costs 5 to activate: it stays unused."""
    scores = np.array([[3.0, 1.0, 1.0], [1.0, 3.0, 0.0]])
    result = assign_budgeted(scores, budget=6, k_min=1, k_max=3, activation_cost=[0.0, 0.0, 5.0])
    assert result.matrix[:, 2].sum() == 0
    assert result.objective == 8.0


def test_max_experts_caps_distinct_experts():
    """max_experts = 1: every instance gets the one expert with the best column total."""
    result = assign_budgeted(SCORES_3x3, budget=9, k_min=1, k_max=3, max_experts=1)
    assert result.matrix.tolist() == [[0, 1, 0]] * 3
    assert result.objective == 10.0


def test_assignment_objective_charges_each_used_expert_once():
    """Chosen scores 3 + 2 + 4 minus the costs of experts 0 and 1 (each once); expert 2 is unused."""
    matrix = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert assignment_objective(SCORES_3x3, matrix, [1.0, 2.0, 100.0]) == 3 + 2 + 4 - 3
    assert assignment_objective(SCORES_3x3, matrix) == 9.0


def test_assignment_matrix_is_read_only():
    """The Assignment is frozen and so is its matrix."""
    result = assign_budgeted(SCORES_3x3, budget=5, k_min=1, k_max=2)
    with pytest.raises(ValueError):
        result.matrix[0, 0] = 1


def test_no_instances_gives_an_empty_assignment():
    """Zero instances: an empty matrix and objective 0, whatever the constraints."""
    result = assign_budgeted(np.zeros((0, 3)), budget=0, k_min=1, k_max=2, capacity=[0, 0, 0], max_experts=1)
    assert result.matrix.shape == (0, 3) and result.objective == 0.0


def test_budget_may_be_a_whole_float():
    """A budget computed as 2.5 * instances (a float with no fraction) is accepted."""
    result = assign_budgeted(SCORES_3x3[:2], budget=2.5 * 2, k_min=1, k_max=3)
    assert result.matrix.sum() == 5


def test_recruit_re_exports_budgeted_assignment():
    """recruit.py is where recruitment policies live; the budgeted one is reachable there."""
    from skillmoe_ray.budget import assignment
    from skillmoe_ray.method import recruit

    assert recruit.assign_budgeted is assignment.assign_budgeted
    assert recruit.Assignment is assignment.Assignment
    assert recruit.unified_scores is assignment.unified_scores


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "options", "message"),
    [
        ((2, 3), {"budget": 9, "k_min": 3, "k_max": 2}, r"k_min=3 > k_max=2"),
        ((2, 3), {"budget": 9, "k_min": 4, "k_max": 4}, r"k_min=4 > number of experts=3"),
        ((3, 3), {"budget": 5, "k_min": 2, "k_max": 3}, r"budget=5 < instances x k_min = 3 x 2 = 6"),
        (
            (3, 2),
            {"budget": 6, "k_min": 1, "k_max": 2, "capacity": [1, 1]},
            r"capacity: total usable capacity 2",
        ),
        # capacity 5 is worth only 2 (one pair per instance): 2 + 1 < 2 x 2
        (
            (2, 2),
            {"budget": 4, "k_min": 2, "k_max": 2, "capacity": [5, 1]},
            r"capacity: total usable capacity 3",
        ),
        ((2, 3), {"budget": 9, "k_min": 2, "k_max": 3, "max_experts": 1}, r"max_experts=1 < k_min=2"),
        (
            (4, 3),
            {"budget": 9, "k_min": 1, "k_max": 3, "capacity": [2, 2, 2], "max_experts": 1},
            r"capacity with max_experts=1: the 1 largest capacities give 2",
        ),
    ],
)
def test_infeasible_constraint_is_named(shape, options, message):
    """Each infeasible combination raises InfeasibleAssignment naming the constraint at fault."""
    with pytest.raises(InfeasibleAssignment, match=message):
        assign_budgeted(np.ones(shape), **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capacity": [1, 1]}, r"capacity must have shape \(3,\), one entry per expert; got \(2,\)"),
        ({"capacity": [[1, 1, 1]]}, r"capacity must have shape \(3,\)"),
        ({"activation_cost": [1.0, 2.0, 3.0, 4.0]}, r"activation_cost must have shape \(3,\)"),
        ({"capacity": [1, -1, 1]}, r"capacity must be non-negative whole numbers; capacity\[1\] = -1"),
        ({"capacity": [1, 1.5, 1]}, r"capacity\[1\] = 1.5"),
        (
            {"activation_cost": [0.0, 0.0, -0.5]},
            r"activation_cost must be finite and non-negative; .*\[2\] = -0.5",
        ),
        ({"activation_cost": [0.0, np.nan, 0.0]}, r"activation_cost\[1\] = nan"),
        ({"budget": -1}, r"budget must be a non-negative whole number, got -1"),
        ({"budget": 2.5}, r"budget must be a non-negative whole number, got 2.5"),
        ({"k_min": -1}, r"k_min must be"),
        ({"k_max": True}, r"k_max must be"),
        ({"max_experts": -2}, r"max_experts must be"),
    ],
)
def test_malformed_argument_is_named(options, message):
    """Malformed arguments raise AssignmentError (a SkillMoEError) naming the argument."""
    arguments = {"scores": np.ones((2, 3)), "budget": 6, "k_min": 1, "k_max": 3, **options}
    with pytest.raises(AssignmentError, match=message) as caught:
        assign_budgeted(**arguments)
    assert isinstance(caught.value, SkillMoEError)
    assert not isinstance(caught.value, InfeasibleAssignment)


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.ones(3), r"scores must be a 2-D \(instances x experts\) array, got shape \(3,\)"),
        (np.array([[1.0, np.inf]]), r"scores must be finite; scores\[0, 1\] = inf"),
        ([["a", "b"]], r"scores must be a numeric"),
    ],
)
def test_malformed_scores_are_named(scores, message):
    """Scores that are not a finite 2-D numeric array are refused with their shape or position."""
    with pytest.raises(AssignmentError, match=message):
        assign_budgeted(scores, budget=1, k_min=0, k_max=1)


def test_infeasible_is_an_assignment_error_and_a_skillmoe_error():
    """Callers can catch every assignment problem at once, and the CLI prints it without a traceback."""
    assert issubclass(InfeasibleAssignment, AssignmentError)
    assert issubclass(AssignmentError, SkillMoEError)
