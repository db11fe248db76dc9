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
    requests += [aggregation_request(i, ["a", "b"], spec, cfg.profiles, "</think>", 0,
                                     "final") for i in insts]
    ids = {i.id for i in insts}
    assert {r.instance_id for r in requests} == ids  # ids with a "/" inside survive (no tag parsing)
    assert all(r.tag.endswith(r.instance_id) or f"/{r.instance_id}/" in r.tag for r in requests)


def test_the_instance_id_is_not_part_of_the_cache_key(tmp_path):
    cfg = make_config(tmp_path)
    inst = Instance("q1", "demo", "What is 1+1?", "2", "math")
    _, request = profile_requests([inst], cfg.experts[:1], cfg.profiles, 0)[0]
    assert replace(request, instance_id="other").key("fp") == request.key("fp")


def test_stage_results_round_trip_through_json_and_a_damaged_entry_is_refused():
    import json

    import pytest

    from skillmoe_ray.method.results import ModelProfiles, ServingPreparation, SkillMapping, SteeringPrep

    profiles = ModelProfiles({"m": {"q": "A"}}, {"m": {"q": True}}, {"m": {"q": "k"}}, {"m": {"algebra": 1}},
                             {"m": 0.5})
    assert ModelProfiles.from_json(json.loads(json.dumps(profiles.to_json()))) == profiles
    mapping = SkillMapping(["algebra"], {"alg": "algebra"}, {"q": ["algebra"]}, {"q": ["algebra", "algebra"]})
    assert SkillMapping.from_json(json.loads(json.dumps(mapping.to_json()))) == mapping
    prep = ServingPreparation(["algebra"], {"m": {"algebra": 1}}, {"m": 1.0}, {"m": {"t": 1.0}}, "m",
                              SteeringPrep({"m": {}}, {"algebra": "t"}, 0.5))
    assert prep.to_json()["steering"] == {"tables": {"m": {}}, "skill_domains": {"algebra": "t"},
                                          "alpha": 0.5}
    with pytest.raises(ValueError, match="SkillMapping: missing mapped_with_repeats"):
        SkillMapping.from_json({"vocabulary": [], "mapping": {}, "mapped": {}})


def test_a_stage_entry_of_the_wrong_shape_is_set_aside_and_computed_again(tmp_path):
    from skillmoe_ray.generation import GenerationService
    from skillmoe_ray.method.results import AggregatorSelection
    from skillmoe_ray.scheduling.executor import SlotExecutor

    cfg = make_config(tmp_path)
    gen = GenerationService(cfg, SlotExecutor(lambda name, slot=0: None))
    made = AggregatorSelection("m", {"m": 1.0}, False)
    assert gen.cached_stage("aggregator_selection", ["x"], lambda: (made, None), AggregatorSelection) == made
    path = gen.cache.path("aggregator_selection", gen.stages["aggregator_selection"].key)
    path.write_text('{"selected": "m"}')  # parses as JSON, but is not a whole selection
    again = gen.cached_stage("aggregator_selection", ["x"], lambda: (made, None), AggregatorSelection)
    assert again == made and not gen.stages["aggregator_selection"].cached
    assert path.with_name(path.name + ".corrupt").exists()


def test_recruitments_round_trip_as_recruitments_and_stage_records_keep_results_json_shape():
    import json

    import pytest

    from skillmoe_ray.method.recruit import Recruitment
    from skillmoe_ray.method.results import RecruitmentStage
    from skillmoe_ray.records import GenerationCounts, StageRecord

    recruitment = Recruitment("q1", ("algebra",), ("m", "m", "n"), {"m": 0.75, "n": 0.25})
    stage = RecruitmentStage([recruitment], {"k": 3})
    stored = json.loads(json.dumps(stage.to_json()))
    assert stored["recruitments"][0]["experts"] == ["m", "m", "n"]
    assert RecruitmentStage.from_json(stored) == stage
    with pytest.raises(ValueError, match="not a recruitment"):
        RecruitmentStage.from_json({"recruitments": [{"instance_id": "q1"}], "info": {}})
    computed = StageRecord("k", False, GenerationCounts(4, 3, 2, 1, 40, 30, 1), 1.5, "/c/k.json")
    assert computed.to_json() == {"key": "k", "cached": False, "requests": 4, "generated": 3,
                                  "expert_groups": 2, "expert_groups_cached": 1, "prompt_tokens": 40,
                                  "output_tokens": 30, "truncated": 1, "seconds": 1.5, "path": "/c/k.json"}
    assert StageRecord(cached=True, fixed="m").to_json() == {"cached": True, "seconds": 0.0, "fixed": "m"}
