"""Batch planning: grouping by expert, ordering for residency, slot placement."""

from __future__ import annotations

from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.plan import ExpertGroup, assign_slots, group_by_expert, order_groups


def req(tag: str, max_tokens: int = 10) -> GenRequest:
    return GenRequest.make([{"role": "user", "content": tag}], Sampling(max_tokens), tag)


def test_group_by_expert_inverts_instance_to_expert():
    pairs = [("a", req("1")), ("b", req("2")), ("a", req("3"))]
    groups = group_by_expert(pairs)
    assert [g.expert for g in groups] == ["a", "b"]
    assert [r.tag for r in groups[0].requests] == ["1", "3"]


def test_order_puts_resident_first_and_next_stage_experts_last():
    groups = [ExpertGroup(e, [req(e, 10 * i)]) for i, e in enumerate(["a", "b", "c", "d"], start=1)]
    ordered = order_groups(groups, resident=["c"], next_experts=["d", "b"])
    assert [g.expert for g in ordered] == ["c", "a", "d", "b"]


def test_assign_slots_balances_work_longest_first():
    groups = [ExpertGroup(e, [req(e, w)]) for e, w in [("a", 100), ("b", 60), ("c", 50), ("d", 10)]]
    slots = assign_slots(groups, 2)
    loads = sorted(sum(g.est_tokens for g in s) for s in slots)
    assert [[g.expert for g in s] for s in slots] == [["a", "d"], ["b", "c"]]
    assert loads[1] - loads[0] <= 10
    assert assign_slots(groups, 1) == [groups]
