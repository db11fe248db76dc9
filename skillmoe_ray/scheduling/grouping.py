"""Batch planning: instance -> experts becomes expert -> work groups, ordered and placed on slots.

DESIGN sections 3.6 and 4. A stage's work is a list of (expert, request) pairs. Inverting it into
one group per expert lets each expert be activated once per stage and generate its whole group in
one engine call. Groups are ordered so that an expert already resident goes first (no activation)
and the experts the next stage needs go last (they stay resident across the boundary).

On several GPU slots, a group much larger than its fair share of the stage can be spread over
replicas of its expert on other slots (``scheduler.max_replicas``), so that one long group (a
long-reasoning model's profile answers, the aggregator's stage) does not hold up the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from skillmoe_ray.engines.base import GenOutput, GenRequest

CHARS_PER_TOKEN = 4  # rough prompt-size estimate before tokenization


@dataclass
class ExpertGroup:
    """All requests of one stage for one expert."""

    expert: str
    requests: list[GenRequest] = field(default_factory=list)
    stage: str | None = None  # timeline label when it differs from the running stage (streamed aggregation)
    replica: int = 0  # which copy of the expert runs this share of its group (0: the expert itself)

    @property
    def est_tokens(self) -> int:
        """Estimated work: prompt tokens (from characters) plus the output token budget."""
        return sum(
            sum(len(c) for _,
                c in r.messages) // CHARS_PER_TOKEN + r.sampling.max_tokens for r in self.requests
        )

    @property
    def n_requests(self) -> int:
        return len(self.requests)

    @property
    def key(self) -> str:
        """The copy of the expert that runs this group: its name, or name#replica."""
        return replica_key(self.expert, self.replica)

    def split(self, parts: int) -> list[ExpertGroup]:
        """``parts`` shards (replica 0..parts-1) taking every parts-th request: sizes stay even."""
        return [replace(self, requests=self.requests[i::parts], replica=i) for i in range(parts)]


def chunked(requests: Sequence, size: int) -> list[list]:
    """``requests`` in consecutive runs of ``size`` (0: one run holding them all)."""
    if size <= 0 or len(requests) <= size:
        return [list(requests)]
    return [list(requests[i:i + size]) for i in range(0, len(requests), size)]


@dataclass
class GroupChunks:
    """One group's chunks (consecutive runs of its requests) and how far it got.

    The executor keeps it across retries, so a fresh expert resumes at the first chunk not done.
    """

    group: ExpertGroup
    parts: list[list]
    done: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        self.chunks = [replace(self.group, requests=part) for part in self.parts]

    def chunk_note(self) -> str:
        return f" in {len(self.chunks)} chunks" if len(self.chunks) > 1 else ""

    def finish_chunk(self, outputs: Sequence[GenOutput]) -> None:
        self.done += 1
        self.prompt_tokens += sum(o.prompt_tokens for o in outputs)
        self.output_tokens += sum(o.output_tokens for o in outputs)

    def remaining(self) -> ExpertGroup:
        """The group's requests not generated yet (what a failure leaves unanswered)."""
        return replace(self.group, requests=[r for c in self.chunks[self.done:] for r in c.requests])


def replica_key(expert: str, replica: int) -> str:
    """Name of one copy of an expert on the slots: replica 0 is the expert itself."""
    return expert if replica == 0 else f"{expert}#{replica}"


# ExpertGroup, or the simulator's Work: expert, est_tokens, n_requests, split()
Shardable = TypeVar("Shardable")


def spread(
    groups: Sequence[Shardable], n_slots: int, max_replicas: int = 1, min_requests: int = 8
) -> list[Shardable]:
    """Split each group larger than the stage's fair share of ``n_slots`` into replicas' shards.

    A group of work W (estimated tokens) with a fair share F = total / n_slots runs on
    ceil(W / F) replicas, at most ``max_replicas`` and ``n_slots``, and only so many that each
    shard keeps ``min_requests`` requests (an extra activation must buy enough generation).
    """
    total = sum(g.est_tokens for g in groups)
    if n_slots <= 1 or max_replicas <= 1 or total <= 0:
        return list(groups)
    fair = total / n_slots
    out = []
    for group in groups:
        parts = min(
            max_replicas, n_slots, math.ceil(group.est_tokens / fair), group.n_requests // min_requests
        )
        out.extend(group.split(parts) if parts > 1 else [group])
    return out


def group_by_expert(pairs: Iterable[tuple[str, GenRequest]]) -> list[ExpertGroup]:
    """One group per expert, in order of first appearance; requests keep their order."""
    groups: dict[str, ExpertGroup] = {}
    for expert, request in pairs:
        groups.setdefault(expert, ExpertGroup(expert)).requests.append(request)
    return list(groups.values())


def order_groups(
    groups: Sequence[ExpertGroup],
    resident: Iterable[str] = (),
    next_experts: Iterable[str] = (),
    rank: Mapping[str, float] | None = None,
) -> list[ExpertGroup]:
    """Resident experts first, experts needed by the next stage last, the rest by work (largest first).

    Online, ``rank`` (how much each expert is worth keeping: its recent recruitment) orders the experts
    to load, lowest first: the last loaded stay resident, so the micro-batch leaves the most recruited
    ones loaded for the next. Without it (batch runs) the order is the work's alone.
    """
    resident, later, rank = set(resident), set(next_experts), rank or {}

    def band(group: ExpertGroup) -> int:
        if group.key in resident:
            return 0
        return 2 if group.expert in later else 1

    def worth(group: ExpertGroup) -> float:  # only the experts to load are ordered by rank
        return rank.get(group.expert, 0.0) if band(group) == 1 else 0.0

    return sorted(groups, key=lambda g: (band(g), worth(g), -g.est_tokens, g.key))


def assign_slots(
    groups: Sequence[ExpertGroup], n_slots: int, homes: Mapping[str, int] | None = None
) -> list[list[ExpertGroup]]:
    """Place ordered groups on ``n_slots`` GPU slots.

    One slot keeps the given order. With several, an expert that has a home slot (it is resident
    or asleep there, so its weights are on that GPU or in host memory next to it) stays on it;
    the others go longest-processing-time first to the slot with the least work so far, replicas
    of one expert to different slots. Each slot keeps the groups in the given order (resident
    first, next stage's experts last). ``homes`` is keyed by :attr:`ExpertGroup.key`.
    """
    if n_slots <= 1:
        return [list(groups)]
    homes = homes or {}
    slots: list[list[ExpertGroup]] = [[] for _ in range(n_slots)]
    load = [0] * n_slots
    placed: dict[int, int] = {}
    taken: dict[str, set[int]] = {}  # expert -> slots holding one of its replicas
    for group in groups:
        if homes.get(group.key) is not None:
            placed[id(group)] = homes[group.key]
            load[homes[group.key]] += group.est_tokens
            taken.setdefault(group.expert, set()).add(homes[group.key])
    for group in sorted((g for g in groups if id(g) not in placed), key=lambda g: -g.est_tokens):
        free = [s for s in range(n_slots) if s not in taken.get(group.expert, ())] or list(range(n_slots))
        target = min(free, key=lambda s: load[s])
        placed[id(group)] = target
        load[target] += group.est_tokens
        taken.setdefault(group.expert, set()).add(target)
    for group in groups:
        slots[placed[id(group)]].append(group)
    return slots
