"""The unified score (DESIGN section 6, USMoE): expert view, instance view, their mix, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from skillmoe_ray.budget.assignment import AssignmentError, unified_scores

SUITABILITY = np.array([[0.0, 1.0], [2.0, 1.0]])
E = np.e


def test_unified_scores_hand_computed():
    """Column 0 has z = [-1, 1], column 1 is constant (z = 0); rows softmax to e/(1+e), 1/(1+e).

    sigmoid(1) = e/(1+e), so with alpha = 0.5 the two views share their terms.
    """
    expected = np.array([[1 / (1 + E), 0.25 + 0.5 * E / (1 + E)], [E / (1 + E), 0.25 + 0.5 / (1 + E)]])
    np.testing.assert_allclose(unified_scores(SUITABILITY), expected, rtol=1e-12)


def test_unified_scores_alpha_one_is_the_expert_view():
    """alpha = 1: sigmoid of column z-scores only."""
    expected = np.array([[1 / (1 + E), 0.5], [E / (1 + E), 0.5]])
    np.testing.assert_allclose(unified_scores(SUITABILITY, alpha=1.0), expected, rtol=1e-12)


def test_unified_scores_alpha_zero_is_the_instance_view_with_temperature():
    """alpha = 0: row softmax of suitability / temperature."""
    half = np.exp(0.5)
    expected = np.array([[1 / (1 + half), half / (1 + half)], [half / (1 + half), 1 / (1 + half)]])
    np.testing.assert_allclose(unified_scores(SUITABILITY, alpha=0.0, temperature=2.0), expected, rtol=1e-12)
    np.testing.assert_allclose(unified_scores(SUITABILITY, alpha=0.0).sum(axis=1), 1.0)


def test_unified_scores_constant_column_has_expert_view_one_half():
    """A constant column (even one whose float std is 1e-17, like 0.1s) has z = 0 everywhere."""
    suitability = np.array([[0.1, 3.0], [0.1, -1.0], [0.1, 0.0]])
    view = unified_scores(suitability, alpha=1.0)
    assert view[:, 0].tolist() == [0.5, 0.5, 0.5]
    assert unified_scores(np.array([[2.0, 5.0]]), alpha=1.0).tolist() == [[0.5, 0.5]]


def test_unified_scores_empty_batch():
    """No instances: an empty score matrix."""
    assert unified_scores(np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\], got -0.1"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\], got 1.5"),
        ({"temperature": 0.0}, r"temperature must be a positive number, got 0.0"),
        ({"temperature": -1.0}, r"temperature must be a positive number"),
        ({"temperature": float("inf")}, r"temperature must be a positive number"),
    ],
)
def test_unified_scores_validates_alpha_and_temperature(options, message):
    """alpha outside [0, 1] and non-positive temperatures are refused by name."""
    with pytest.raises(AssignmentError, match=message):
        unified_scores(SUITABILITY, **options)


def test_unified_scores_rejects_non_matrix():
    """A 1-D suitability is refused with its shape."""
    with pytest.raises(AssignmentError, match=r"suitability must be a finite 2-D .* got shape \(3,\)"):
        unified_scores(np.ones(3))
