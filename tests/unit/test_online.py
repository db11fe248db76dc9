"""Online answering in-process (fake engine, no Ray): batching by expert, routing, errors."""

from __future__ import annotations

import itertools

import pytest

from skillmoe_ray.data import load_data
from skillmoe_ray.engines import create_engine
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.scheduling.executor import SlotExecutor
from skillmoe_ray.scheduling.handles import LocalExpert
from skillmoe_ray.scheduling.policy import ExecutionPolicy
from skillmoe_ray.serving.batching import DEFER
from skillmoe_ray.serving.openai_api import parse_request
from skillmoe_ray.serving.router import OnlineRouter
from tests.conftest import make_config
from tests.unit.test_pipeline import fake_embedder


def router_for(tmp_path, overrides=(), policy=None):
    cfg = make_config(tmp_path, list(overrides))
    executor = SlotExecutor(lambda name, slot=0: LocalExpert(create_engine(cfg.engine, cfg.pool[name])),
                            policy)
    pipe = Pipeline(cfg, executor, embedder_factory=fake_embedder, failures="report")
    val, _ = load_data(cfg.data, cfg.seed)
    prep = pipe.prepare(val)
    return OnlineRouter(cfg, pipe.generation, prep, fake_embedder("x")), executor


def job(question, model="symbolic-moe", **skillmoe):
    import json

    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    if skillmoe:
        body["skillmoe"] = skillmoe
    return parse_request(json.dumps(body).encode(), 1 << 20, default_k=3)


QUESTIONS = [f"What is {n} times {n + 1}? Think about algebra and number theory." for n in range(12)]


def test_a_batch_is_answered_with_one_engine_call_per_expert(tmp_path):
    router, executor = router_for(tmp_path)
    calls_before = executor.generate_calls
    outcomes = router.answer([job(q) for q in QUESTIONS])
    assert [o.status for o in outcomes] == [200] * len(QUESTIONS)
    assert all(o.content and o.skillmoe["experts"] and o.skillmoe["aggregator"] for o in outcomes)
    calls = executor.generate_calls - calls_before
    distinct = len({e for o in outcomes for e in o.skillmoe["experts"]})
    assert calls == 1 + distinct + 1  # keyword model, each recruited expert once, the aggregator
    assert calls < len(QUESTIONS) * 3


def test_route_only_recruits_without_generating_answers(tmp_path):
    router, executor = router_for(tmp_path)
    outcome = router.answer([job(QUESTIONS[0], route_only=True)])[0]
    assert outcome.status == 200 and outcome.content == "" and outcome.finish_reason == "route_only"
    details = outcome.skillmoe
    assert len(details["experts"]) == 3 and sum(details["probabilities"].values()) == pytest.approx(1)
    assert details["predicted_cost"]["expert_calls"] == 4
    assert "inference" not in router.generation.stages


def test_model_field_selects_k_and_baselines(tmp_path):
    router, _ = router_for(tmp_path)
    k5, majority, single = router.answer([job(QUESTIONS[1], "symbolic-moe-k5"),
                                          job(QUESTIONS[1], "majority-vote"),
                                          job(QUESTIONS[1], "single")])
    assert len(k5.skillmoe["experts"]) == 5 and k5.skillmoe["aggregator"]
    assert len(majority.skillmoe["experts"]) == 3 and majority.skillmoe["aggregator"] is None
    assert len(single.skillmoe["experts"]) == 1


def test_a_repeated_question_is_served_from_the_cache(tmp_path):
    router, executor = router_for(tmp_path)
    first = router.answer([job(QUESTIONS[2])])[0]
    calls = executor.generate_calls
    again = router.answer([job(QUESTIONS[2])])[0]
    assert executor.generate_calls == calls and again.content == first.content


def test_a_failing_expert_fails_only_the_requests_that_need_it(tmp_path):
    healthy, _ = router_for(tmp_path)  # fills the cache, and shows who is recruited for what
    routes = [o.skillmoe["experts"] for o in healthy.answer([job(q, route_only=True) for q in QUESTIONS])]
    culprit = next(
        e for e in sorted({e for r in routes for e in r}) if 0 < sum(e in r for r in routes) < len(routes)
    )
    router, _ = router_for(tmp_path, [f"+engine.options.fail_models=[{culprit}]"])
    outcomes = router.answer([job(q) for q in QUESTIONS])
    for route, outcome in zip(routes, outcomes):
        if culprit in route:
            assert outcome.status == 502 and culprit in outcome.error
        else:
            assert outcome.status == 200 and outcome.content


def test_online_answers_from_moe_experts_are_steered_like_batch_ones(tmp_path):
    plain, _ = router_for(tmp_path / "plain")
    first = plain.answer([job(q) for q in QUESTIONS])
    used = sorted({e for o in first for e in o.skillmoe["experts"]})
    steered, executor = router_for(
        tmp_path / "steered", ["steering.enabled=true", f"+pool.models.{used[0]}.moe=true"]
    )
    assert steered.prep.steering.tables[used[0]]
    sent = []
    original = executor.run_stage

    def spy(stage, groups, *args, **kwargs):
        sent.extend((g.expert, r.steering) for g in groups for r in g.requests)
        return original(stage, groups, *args, **kwargs)

    executor.run_stage = spy
    assert [o.status for o in steered.answer([job(q) for q in QUESTIONS])] == [200] * len(QUESTIONS)
    assert any(steering is not None for expert, steering in sent if expert == used[0])
    assert all(steering is None for expert, steering in sent if expert != used[0])


def test_a_requests_own_sampling_drives_its_reply_and_the_expert_answers_stay_shared(tmp_path):
    import json

    router, _ = router_for(tmp_path)
    seen: dict[str, list] = {}
    generate = router.generation.phase

    def recording(stage, pairs, *args, **kwargs):
        seen.setdefault(stage, []).extend(request for _, request in pairs)
        return generate(stage, pairs, *args, **kwargs)

    router.generation.phase = recording
    own = {"seed": 9, "temperature": 0.1, "max_tokens": 7}
    raw = {"messages": [{"role": "user", "content": QUESTIONS[4]}], **own}
    outcomes = router.answer(
        [
            job(QUESTIONS[4]),
            parse_request(json.dumps(raw).encode(), 1 << 20, 3),
            parse_request(json.dumps({**raw, "model": "majority-vote"}).encode(), 1 << 20, 3),
        ]
    )
    assert [o.status for o in outcomes] == [200] * 3
    aggregations = {(r.sampling.temperature, r.sampling.max_tokens) for r in seen["aggregation"]}
    assert (0.1, 7) in aggregations and len(seen["aggregation"]) == 2  # the default and the request's own
    answers = set(seen["inference"])  # the pipeline generates each distinct request once
    own_answers = [r for r in answers if (r.sampling.temperature, r.sampling.max_tokens) == (0.1, 7)]
    assert len(own_answers) == 3  # majority vote has no aggregator: its answers take the request's sampling
    assert len(answers) == 6  # symbolic-moe's experts answer the same for both of its requests


def test_online_recruitment_is_the_batch_policy_budgeted_included(tmp_path):
    """recruit=budgeted online: the batch path's own policy assigns over the micro-batch (its budget holds,
    an instance gets k_min..k_max experts), and each request's experts are what the policy chose."""
    from dataclasses import replace

    from skillmoe_ray.method.recruit import recruit_budgeted

    overrides = ["recruit=budgeted", "recruit.budget.per_instance=1.5", "recruit.budget.k_min=1"]
    router, _ = router_for(tmp_path, overrides)
    jobs = [job(q, route_only=True) for q in QUESTIONS[:6]]
    outcomes = router.answer(jobs)
    assert [o.status for o in outcomes] == [200] * len(jobs)
    chosen = [o.skillmoe["experts"] for o in outcomes]
    assert sum(map(len, chosen)) <= round(1.5 * len(jobs)) and all(1 <= len(c) <= 3 for c in chosen)
    assert len({len(c) for c in chosen}) > 1 or sum(map(len, chosen)) < 3 * len(jobs)  # not a fixed top-k
    skills = {f"q{i}": o.skillmoe["mapped_skills"] for i, o in enumerate(outcomes)}
    direct = recruit_budgeted(
        skills,
        router.prep.profiles,
        router.prep.distribution,
        router.experts,
        replace(router.cfg.recruit, k=3),
        router.cfg.seed,
    )
    assert [list(r.experts) for r in direct.recruitments] == chosen


def test_online_symbolic_moe_recruitment_matches_the_batch_policy_per_instance(tmp_path):
    from skillmoe_ray.method.recruit import recruit_symbolic_moe
    from skillmoe_ray.serving.router import job_instance

    router, _ = router_for(tmp_path)
    jobs = [job(q, route_only=True) for q in QUESTIONS[:4]]
    outcomes = router.answer(jobs)
    skills = {job_instance(j).id: o.skillmoe["mapped_skills"] for j, o in zip(jobs, outcomes)}
    direct = recruit_symbolic_moe(
        skills,
        router.prep.profiles,
        router.prep.distribution,
        router.experts,
        router.cfg.recruit,
        router.cfg.seed,
    )
    assert [list(r.experts) for r in direct.recruitments] == [o.skillmoe["experts"] for o in outcomes]


def test_the_rival_routers_model_names_are_answered_with_their_own_recruitment(tmp_path):
    """avengers and knn (model names of /v1/models) recruit with their own policy from the question's
    embedding, the same recruitment as the batch policy's; knn here combined by the aggregator."""
    from skillmoe_ray.method.rivals import QuestionEvidence, recruit_avengers
    from skillmoe_ray.serving.openai_api import model_names
    from skillmoe_ray.serving.router import job_instance

    assert {"avengers", "knn"} <= set(model_names(3))
    router, _ = router_for(tmp_path, ["recruit.avengers.n_clusters=4", "recruit.knn.combine=aggregator"])
    jobs = [job(QUESTIONS[0], "avengers"), job(QUESTIONS[0], "knn"),
            job(QUESTIONS[3], "avengers", route_only=True)]
    voted, aggregated, routed = router.answer(jobs)
    assert [o.status for o in (voted, aggregated, routed)] == [200] * 3
    assert voted.content and len(voted.skillmoe["experts"]) == 3 and voted.skillmoe["aggregator"] is None
    assert aggregated.content and aggregated.skillmoe["aggregator"] == router.prep.aggregator
    assert len(set(voted.skillmoe["experts"])) == 3  # the three best of its cluster, each once
    inst = job_instance(jobs[2])
    evidence = QuestionEvidence.embed(router.embed, router.prep.val_questions, router.prep.correct,
                                      {inst.id: inst.question})
    direct = recruit_avengers({inst.id: []}, {}, {}, router.experts, router.cfg.recruit, router.cfg.seed,
                              evidence)
    assert routed.skillmoe["experts"] == list(direct.recruitments[0].experts)


def test_the_warm_up_loads_what_fits_and_a_warm_service_answers_without_loading(tmp_path):
    router, executor = router_for(tmp_path, policy=ExecutionPolicy(gpu_memory_bytes=float("inf")))
    order = router.warm_order()
    assert order[:2] == [router.cfg.skills.keyword_model, router.prep.aggregator]
    assert set(router.generation.warm_up(order)) == set(order)
    loads = sum(executor.activations.values())
    assert [o.status for o in router.answer([job(q) for q in QUESTIONS[:4]])] == [200] * 4
    assert sum(executor.activations.values()) == loads  # every model was warm
    rank = executor.slots.rank
    assert rank[router.prep.aggregator] == rank[router.cfg.skills.keyword_model] == float("inf")
    assert any(0 < v < float("inf") for v in rank.values())  # the recruited experts, by recent count


def test_with_one_model_per_slot_the_warm_up_evicts_nothing(tmp_path):
    router, executor = router_for(tmp_path)  # the default policy: one resident model per slot
    before, loads = executor.resident_experts(), sum(executor.activations.values())
    assert len(before) == 1  # the preparation's last model
    assert router.generation.warm_up(router.warm_order()) == before
    assert sum(executor.activations.values()) == loads


def test_a_request_whose_experts_are_resident_is_answered_before_another_requests_cold_load(tmp_path):
    """Swap-aware answering: the warm request is delivered while the cold expert is still not loaded."""
    router, executor = router_for(
        tmp_path, ["+engine.options.load_delay_s=0.3"], policy=ExecutionPolicy(gpu_memory_bytes=float("inf"))
    )
    router.generation.warm_up(router.warm_order())
    routes = [o.skillmoe["experts"] for o in router.answer([job(q, route_only=True) for q in QUESTIONS])]
    warm_q, cold_q, cold_expert = next(
        (QUESTIONS[i], QUESTIONS[j], e)
        for i, j in itertools.permutations(range(12), 2)
        for e in routes[j]
        if e not in routes[i]
    )
    executor.slots.discard(0, cold_expert)  # evicted: its next use loads (slowly)
    delivered = []

    def deliver(index, outcome):
        delivered.append((index, outcome.status, cold_expert in executor.resident_experts()))

    outcomes = router.answer([job(warm_q), job(cold_q)], deliver, [False, False])
    assert delivered == [(0, 200, False), (1, 200, True)]  # the warm one first, before the load
    assert [o.status for o in outcomes] == [200, 200]
    executor.slots.discard(0, cold_expert)
    outcomes = router.answer(
        [job(warm_q + " Again."), job(cold_q + " Again.")], lambda i, o: None, [False, True]
    )
    assert outcomes[0].status == 200 and outcomes[1] is DEFER  # waits to share the load with later requests
    assert cold_expert not in executor.resident_experts()


def test_stop_usage_and_a_conversation_in_one_batch(tmp_path):
    """The reply is cut at the stop string; usage is the reply's generation, the ensemble's per stage in
    skillmoe.usage; a conversation's skills come from its last user message, its answers from the whole."""
    import json

    def raw(messages, **fields):
        return parse_request(json.dumps({"messages": messages, **fields}).encode(), 1 << 20, 3)

    router, _ = router_for(tmp_path)
    question = [{"role": "user", "content": QUESTIONS[3]}]
    plain, stopped, voted, talk = router.answer(
        [
            raw(question),
            raw(question, stop=["answer"]),
            raw(question, model="majority-vote"),
            raw([{"role": "system", "content": "Answer in French."}, *question]),
        ]
    )
    assert "answer" in plain.content and stopped.finish_reason == "stop"
    assert stopped.content == plain.content[: plain.content.index("answer")]
    stages = plain.skillmoe["usage"]
    assert stages["keywords"]["completion_tokens"] > 0 and stages["experts"]["completion_tokens"] > 0
    assert plain.usage == stages["aggregator"] and plain.usage["completion_tokens"] > 0
    assert voted.skillmoe["usage"]["aggregator"]["completion_tokens"] == 0
    assert voted.usage["completion_tokens"] > 0
    assert voted.usage["completion_tokens"] < voted.skillmoe["usage"]["experts"]["completion_tokens"]
    assert talk.skillmoe["skills"] == plain.skillmoe["skills"]  # skills: the last user message
    # the experts and the aggregator read the system message above the question
    assert talk.skillmoe["usage"]["experts"]["prompt_tokens"] > stages["experts"]["prompt_tokens"]
    assert talk.usage["prompt_tokens"] > plain.usage["prompt_tokens"]


def test_a_waiting_request_joins_a_load_that_the_batch_pays_anyway(tmp_path):
    """A deferrable request whose cold models another request's load covers is answered with it; one needing
    a model nobody loads waits."""
    router, executor = router_for(tmp_path, policy=ExecutionPolicy(gpu_memory_bytes=float("inf")))
    router.generation.warm_up(router.warm_order())
    asked = [q + " Once more." for q in QUESTIONS]
    routes = [set(o.skillmoe["experts"]) for o in router.answer([job(q, route_only=True) for q in asked])]
    due, joining, other, cold = next(
        (i, j, m, e)
        for i, j, m in itertools.permutations(range(12), 3)
        for e in routes[i] & routes[j]
        if routes[j] <= routes[i] and routes[m] - routes[i]
    )
    executor.slots.discard(0, cold)
    executor.slots.discard(0, next(iter(routes[other] - routes[due])))  # cold too, and nobody loads it
    outcomes = router.answer([job(asked[q]) for q in (due, joining, other)],
                             lambda i, o: None, [False, True, True])
    assert outcomes[0].status == outcomes[1].status == 200 and outcomes[2] is DEFER
    assert cold in executor.resident_experts()
