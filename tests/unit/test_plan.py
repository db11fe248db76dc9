"""Batch planning: grouping by expert, ordering for residency, slot placement."""

from __future__ import annotations

from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.scheduling.grouping import ExpertGroup, assign_slots, group_by_expert, order_groups, spread


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


def test_online_the_experts_to_load_go_lowest_ranked_first_so_the_most_recruited_stay_loaded():
    groups = [ExpertGroup(e, [req(e, 10)]) for e in ["a", "b", "c", "d"]]
    ordered = order_groups(groups, resident=["d"], rank={"a": 5.0, "b": 1.0, "c": 3.0, "d": 0.0})
    assert [g.expert for g in ordered] == ["d", "b", "c", "a"]
    assert [g.expert for g in order_groups(groups)] == ["a", "b", "c", "d"]  # batch runs: no rank

def test_assign_slots_balances_work_longest_first():
    groups = [ExpertGroup(e, [req(e, w)]) for e, w in [("a", 100), ("b", 60), ("c", 50), ("d", 10)]]
    slots = assign_slots(groups, 2)
    loads = sorted(sum(g.est_tokens for g in s) for s in slots)
    assert [[g.expert for g in s] for s in slots] == [["a", "d"], ["b", "c"]]
    assert loads[1] - loads[0] <= 10
    assert assign_slots(groups, 1) == [groups]


def big_and_small():
    return [ExpertGroup("big", [req(f"b{i}") for i in range(40)]), ExpertGroup("s1", [req("x")]),
            ExpertGroup("s2", [req("y")])]


def test_spread_splits_a_dominant_group_into_replicas_covering_every_request_once():
    shards = spread(big_and_small(), n_slots=4, max_replicas=4, min_requests=8)
    big = [g for g in shards if g.expert == "big"]
    assert [g.key for g in big] == ["big", "big#1", "big#2", "big#3"]
    assert sorted(r.tag for g in big for r in g.requests) == sorted(f"b{i}" for i in range(40))
    assert {len(g.requests) for g in big} == {10}
    assert [g.key for g in shards if g.expert != "big"] == ["s1", "s2"]  # small groups stay whole


def test_spread_respects_its_limits():
    assert len(spread(big_and_small(), 4, max_replicas=1)) == 3  # off by default
    assert len(spread(big_and_small(), 1, max_replicas=4)) == 3  # one slot: nothing to spread over
    assert len(spread(big_and_small(), 8, max_replicas=2)) == 4  # at most max_replicas copies
    assert len(spread(big_and_small(), 8, max_replicas=8, min_requests=20)) == 4  # shards keep 20 requests
    even = [ExpertGroup(e, [req(f"{e}{i}") for i in range(10)]) for e in "abcd"]
    assert len(spread(even, 4, max_replicas=4, min_requests=1)) == 4  # no group above its fair share


def test_replicas_of_one_expert_go_to_different_slots():
    slots = assign_slots(spread(big_and_small(), 4, max_replicas=4), 4, homes={"big": 2})
    where = {g.key: i for i, s in enumerate(slots) for g in s}
    assert where["big"] == 2  # the expert's home keeps the first share
    assert len({where[f"big#{i}"] for i in (1, 2, 3)} | {2}) == 4
