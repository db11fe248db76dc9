"""The stage request builders: every request names the instance it answers, and ids never change keys."""

from __future__ import annotations

from dataclasses import replace

from skillmoe_ray.data.instances import Instance
from skillmoe_ray.method.requests import (
    aggregation_request,
    analysis_requests,
    profile_requests,
    skill_requests,
)
from tests.conftest import make_config


def test_every_stage_request_carries_its_instance_id(tmp_path):
    cfg = make_config(tmp_path)
    insts = [Instance(f"t/{i}", "demo", f"What is {i}+{i}?", str(2 * i), "math") for i in range(3)]
    spec = cfg.experts[0]
    requests = [r for _, r in skill_requests(insts, spec, cfg.skills, 0)]
    requests += [r for _, r in profile_requests(insts, cfg.experts, cfg.profiles, 0)]
    requests += [r for _, r in analysis_requests(insts, cfg.experts, cfg.profiles, 0)]
    requests += [aggregation_request(i, ["a", "b"], spec, cfg.profiles, "</think>", 0, "final") for i in insts]
    ids = {i.id for i in insts}
    assert {r.instance_id for r in requests} == ids  # ids with a "/" inside survive (no tag parsing)
    assert all(r.tag.endswith(r.instance_id) or f"/{r.instance_id}/" in r.tag for r in requests)


def test_the_instance_id_is_not_part_of_the_cache_key(tmp_path):
    cfg = make_config(tmp_path)
    inst = Instance("q1", "demo", "What is 1+1?", "2", "math")
    _, request = profile_requests([inst], cfg.experts[:1], cfg.profiles, 0)[0]
    assert replace(request, instance_id="other").key("fp") == request.key("fp")
