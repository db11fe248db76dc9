"""DSMoE domain steering (arXiv 2604.05267) for experts that are themselves MoE LLMs: the pure part.

DESIGN section 6. For each validation question the engine reports, per MoE layer and internal
expert, how often the router picked that expert over the prompt's tokens (``counts``) and how much
of the prompt's gradient-x-input saliency went through it (``saliency``). An internal expert is
domain-specific when a domain's questions route to it, and route their important tokens to it,
more than other domains' questions do. At inference, a query whose skills map to that domain gets
ln(1 + alpha) added to those experts' router logits.

Domains are the validation questions' tasks. A skill belongs to the domain of most validation
questions that needed it; a test question belongs to the domain most of its skills belong to.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from skillmoe_ray.config import SteeringConfig
from skillmoe_ray.engines.base import Steering

# domain -> the (layer, internal expert) pairs steered for it
Table = dict[str, list[tuple[int, int]]]


def _per_layer_share(matrix: np.ndarray) -> np.ndarray:
    """Each layer's row scaled to sum to 1 (all-zero rows stay zero)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)


def domain_scores(records: Sequence[tuple[str, np.ndarray, np.ndarray]],
                  count_weight: float = 0.5) -> dict[str, np.ndarray]:
    """Score of every (layer, expert) for every domain: how much more the domain uses it than the rest.

    ``records`` are (domain, counts, saliency) per validation question, each matrix layers x experts.
    A domain's profile is the mean per-layer share of routing (and of saliency) over its questions;
    its score is ``count_weight`` x (routing share - the other domains' mean) plus the rest of the
    weight times the same difference of saliency shares. With a single domain the other side is the
    uniform share, so the score still marks the experts that domain prefers.
    """
    by_domain: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for domain, counts, saliency in records:
        by_domain.setdefault(domain, []).append(
            (_per_layer_share(np.asarray(counts, float)), _per_layer_share(np.asarray(saliency, float))))
    profiles = {d: (np.mean([c for c, _ in rows], axis=0), np.mean([s for _, s in rows], axis=0))
                for d, rows in by_domain.items()}
    scores = {}
    for domain, (count_share, sal_share) in profiles.items():
        others = [p for d, p in profiles.items() if d != domain]
        if others:
            base_count = np.mean([c for c, _ in others], axis=0)
            base_sal = np.mean([s for _, s in others], axis=0)
        else:
            base_count = base_sal = np.full_like(count_share, 1.0 / count_share.shape[1])
        scores[domain] = count_weight * (count_share - base_count) + (1 - count_weight) * (
            sal_share - base_sal
        )
    return scores


def select_experts(scores: Mapping[str, np.ndarray], per_layer: int) -> Table:
    """The ``per_layer`` best-scoring internal experts of each layer per domain, positive scores only."""
    table: Table = {}
    for domain, matrix in scores.items():
        pairs = []
        for layer, row in enumerate(matrix):
            best = np.argsort(-row, kind="stable")[:per_layer]
            pairs.extend((layer, int(e)) for e in best if row[e] > 0)
        table[domain] = pairs
    return table


SALIENCY_BINS = 10  # the engine reports each token's routing by its saliency decile within the prompt


def paper_scores(
    records: Sequence[tuple[str, np.ndarray, np.ndarray]], percentile: int = 80
) -> dict[str, np.ndarray]:
    """DSMoE's expert score (its Eq. 8) per domain and (layer, expert): activations by the domain's specific
    tokens minus activations by common tokens, averaged over the domain's validation questions.

    ``records`` are (domain, bins, common) per question: ``bins`` layers x experts x 10, the share of the
    prompt's non-common tokens in each saliency decile routed to the expert; ``common`` layers x experts,
    the share of stopword and punctuation tokens. A token is domain-specific when its gradient-x-input
    saliency is at or above the ``percentile`` (a multiple of 10) of the prompt's tokens; the rest are common.
    Each layer's activations of either kind are taken as a distribution over its experts (they sum to 1),
    so the score says where specific tokens go more than common ones, whatever the two kinds' sizes.
    """
    cut = percentile // 10
    by_domain: dict[str, list[np.ndarray]] = {}
    for domain, bins, common in records:
        bins, common = np.asarray(bins, float), np.asarray(common, float)
        specific = _per_layer_share(bins[:, :, cut:].sum(axis=-1))
        generic = _per_layer_share(common + bins[:, :, :cut].sum(axis=-1))
        by_domain.setdefault(domain, []).append(specific - generic)
    return {domain: np.mean(rows, axis=0) for domain, rows in by_domain.items()}


def select_global(scores: Mapping[str, np.ndarray], fraction: float) -> Table:
    """DSMoE's global choice: per domain, the top ``fraction`` of all (layer, expert) pairs (at least one),
    positive scores only, whatever their layers."""
    table: Table = {}
    for domain, matrix in scores.items():
        k = max(1, round(fraction * matrix.size))
        order = np.argsort(-matrix, axis=None, kind="stable")[:k]
        layers, experts = np.unravel_index(order, matrix.shape)
        table[domain] = sorted(
            (int(layer), int(e)) for layer, e in zip(layers, experts) if matrix[layer, e] > 0
        )
    return table


def score_experts(records: Sequence[tuple], st: SteeringConfig) -> dict[str, np.ndarray]:
    """Domain scores by the configured rule (``st``: the steering config): shares or DSMoE's Eq. 8."""
    if st.score == "paper":
        return paper_scores(records, st.saliency_percentile)
    return domain_scores(records, st.count_weight)


def choose_experts(scores: Mapping[str, np.ndarray], st: SteeringConfig) -> Table:
    """The steered internal experts by the configured selection.

    The best per layer, or the global top share.
    """
    if st.selection == "global":
        return select_global(scores, st.top_fraction)
    return select_experts(scores, st.experts_per_layer)


def skill_domains(
    instance_skills: Mapping[str, Sequence[str]], instance_domain: Mapping[str, str]
) -> dict[str, str]:
    """Each skill's domain: the domain of most validation questions that needed it (ties: by name)."""
    votes: dict[str, Counter] = {}
    for iid, skills in instance_skills.items():
        for skill in skills:
            votes.setdefault(skill, Counter())[instance_domain[iid]] += 1
    return {skill: min(c, key=lambda d: (-c[d], d)) for skill, c in votes.items()}


def query_domain(skills: Sequence[str], domain_of_skill: Mapping[str, str]) -> str | None:
    """The domain most of a query's skills belong to (ties: by name); None when none is known."""
    votes = Counter(domain_of_skill[s] for s in skills if s in domain_of_skill)
    return min(votes, key=lambda d: (-votes[d], d)) if votes else None


def query_domains(
    instance_skills: Mapping[str, Sequence[str]], domain_of_skill: Mapping[str, str]
) -> dict[str, str | None]:
    """Each instance's domain from its skills (:func:`query_domain`)."""
    return {iid: query_domain(skills, domain_of_skill) for iid, skills in instance_skills.items()}


def steerer(
    tables: Mapping[str, Table], domains: Mapping[str, str | None], alpha: float
) -> Callable[[str, str], Steering | None]:
    """(expert, instance id) -> the steering of that expert's answer to that instance, if any.

    ``tables`` holds the identified experts of each MoE pool expert; ``domains`` each test
    instance's domain (:func:`query_domains`).
    """

    def steer(expert: str, instance_id: str) -> Steering | None:
        table = tables.get(expert)
        return steering_for(table, domains.get(instance_id), alpha) if table else None

    return steer


def steering_for(table: Table, domain: str | None, alpha: float) -> Steering | None:
    """The router bias ln(1 + alpha) on the domain's experts; None without a domain or experts."""
    pairs = table.get(domain or "", [])
    if not pairs:
        return None
    return Steering(round(math.log1p(alpha), 6), tuple(sorted((int(layer), int(e)) for layer, e in pairs)))
