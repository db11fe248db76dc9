"""Batch planning: instance -> experts becomes expert -> work groups, ordered and placed on slots.

DESIGN sections 3.6 and 4. A stage's work is a list of (expert, request) pairs. Inverting it into
one group per expert lets each expert be activated once per stage and generate its whole group in
one engine call. Groups are ordered so that an expert already resident goes first (no activation)
and the experts the next stage needs go last (they stay resident across the boundary).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from skillmoe_ray.engines.base import GenRequest

CHARS_PER_TOKEN = 4  # rough prompt-size estimate before tokenization


@dataclass
class ExpertGroup:
    """All requests of one stage for one expert."""

    expert: str
    requests: list[GenRequest] = field(default_factory=list)
    stage: str | None = None  # timeline label when it differs from the running stage (streamed aggregation)

    @property
    def est_tokens(self) -> int:
        """Estimated work: prompt tokens (from characters) plus the output token budget."""
        return sum(
            sum(len(c) for _, c in r.messages) // CHARS_PER_TOKEN + r.sampling.max_tokens for r in self.requests
        )


def group_by_expert(pairs: Iterable[tuple[str, GenRequest]]) -> list[ExpertGroup]:
    """One group per expert, in order of first appearance; requests keep their order."""
    groups: dict[str, ExpertGroup] = {}
    for expert, request in pairs:
        groups.setdefault(expert, ExpertGroup(expert)).requests.append(request)
    return list(groups.values())


def order_groups(
    groups: Sequence[ExpertGroup], resident: Iterable[str] = (), next_experts: Iterable[str] = ()
) -> list[ExpertGroup]:
    """Resident experts first, experts needed by the next stage last, the rest by work (largest first)."""
    resident, later = set(resident), set(next_experts)

    def band(group: ExpertGroup) -> int:
        if group.expert in resident:
            return 0
        return 2 if group.expert in later else 1

    return sorted(groups, key=lambda g: (band(g), -g.est_tokens, g.expert))


def assign_slots(groups: Sequence[ExpertGroup], n_slots: int, homes: Mapping[str, int] | None = None) -> list[list[ExpertGroup]]:
    """Place ordered groups on ``n_slots`` GPU slots.

    One slot keeps the given order. With several, an expert that has a home slot (it is resident
    or asleep there, so its weights are on that GPU or in host memory next to it) stays on it;
    the others go longest-processing-time first to the slot with the least work so far. Each
    slot keeps the groups in the given order (resident first, next stage's experts last).
    """
    if n_slots <= 1:
        return [list(groups)]
    homes = homes or {}
    slots: list[list[ExpertGroup]] = [[] for _ in range(n_slots)]
    load = [0] * n_slots
    placed: dict[int, int] = {}
    for group in groups:
        if homes.get(group.expert) is not None:
            placed[id(group)] = homes[group.expert]
            load[homes[group.expert]] += group.est_tokens
    for group in sorted((g for g in groups if id(g) not in placed), key=lambda g: -g.est_tokens):
        target = load.index(min(load))
        placed[id(group)] = target
        load[target] += group.est_tokens
    for group in groups:
        slots[placed[id(group)]].append(group)
    return slots
