"""Settings of the recruitment policies beyond the paper's own: the budgeted assignment and the rival
routers (``avengers``, ``knn``), each a section of ``recruit`` named after its policy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetConfig:
    """Settings of the budgeted (USMoE-style) policy; see skillmoe_ray.budget.assignment."""

    per_instance: float = 2.0
    k_min: int = 1
    k_max: int | None = None
    capacity: int | None = None
    max_experts: int | None = None
    activation_cost: float = 0.0
    alpha: float = 0.5
    temperature: float = 1.0


@dataclass(frozen=True)
class AvengersConfig:
    """The Avengers router (arXiv 2505.19797): validation questions in ``n_clusters`` k-means clusters;
    ``combine``: how its experts' answers become one (``vote``, as Avengers does, or ``aggregator``)."""

    n_clusters: int = 8
    combine: str = "vote"


@dataclass(frozen=True)
class KnnConfig:
    """The nearest-neighbour router: each model scored on the ``n_neighbors`` most similar validation
    questions; ``combine`` as for Avengers."""

    n_neighbors: int = 10
    combine: str = "vote"
