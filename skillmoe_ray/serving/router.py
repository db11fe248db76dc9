"""Answering a micro-batch of online requests with the batch pipeline's own machinery.

The router receives what it uses: the config, the generation service (its cached, grouped phases, and
which experts are resident), the serving preparation (made once by the pipeline's validation stages) and
the embedder; it runs no pipeline stage and imports nothing of the pipeline.

Each request becomes an Instance (its id a hash of the question, so a repeated question hits the
generation cache). The keyword model annotates every question of the batch in one call; keywords map
onto the validation vocabulary; each request is recruited for by its method; then the requests'
method plans run through :class:`PlanRunner`, which groups every phase by expert, so each expert
serves the whole batch in one engine call. A rival router's method (``avengers``, ``knn``) recruits with
its own policy, from the request's question embedded beside the validation questions (embedded once).
Route-only requests stop after recruitment. A request's own sampling (temperature, max_tokens, seed)
gives its method a plan of its own, whose reply (the aggregation) is generated with that sampling; the
experts' answers stay shared.

A conversation's skills are inferred from its last user message (the keyword model reads only that);
the experts and the aggregator read the whole conversation (:attr:`Job.prompt`). The reply is cut at
the request's ``stop`` strings; its ``usage`` is the reply generation's tokens, the ensemble's per stage
are in ``skillmoe.usage``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import CHOICE, MATH, Instance
from skillmoe_ray.generation import GenerationService
from skillmoe_ray.method.aggregate import extract_answer
from skillmoe_ray.method.catalog import MethodContext, build_plans
from skillmoe_ray.method.recruit import Recruitment, recruit_with_policy
from skillmoe_ray.method.requests import skill_requests
from skillmoe_ray.method.results import ServingPreparation
from skillmoe_ray.method.rivals import QuestionEvidence
from skillmoe_ray.method.runner import PlanRun, PlanRunner, ReplySampling
from skillmoe_ray.method.skills import Embedder, annotate, map_instance_skills, map_keywords, question_text
from skillmoe_ray.method.steering import query_domains, steerer
from skillmoe_ray.registry import METHODS, RECRUIT_POLICIES
from skillmoe_ray.scheduling.residency import ALWAYS_NEEDED
from skillmoe_ray.seeding import stable_hash
from skillmoe_ray.serving.batching import DEFER
from skillmoe_ray.serving.openai_api import Job, apply_stop

log = logging.getLogger(__name__)
# Share of an expert's recent recruitment count carried into the next micro-batch: its eviction rank online
RECENT_DECAY = 0.9


@dataclass
class Outcome:
    """What the service answers for one job: HTTP status, message content, usage, routing details."""

    status: int
    content: str = ""
    finish_reason: str = "stop"
    usage: dict = field(default_factory=dict)
    skillmoe: dict = field(default_factory=dict)
    error: str | None = None
    replies: list[tuple[str, str]] | None = None  # (content, finish_reason) of each of n replies; None: one

    def choices(self) -> list[tuple[str, str]]:
        """(content, finish_reason) of every reply."""
        return self.replies or [(self.content, self.finish_reason)]


@dataclass(frozen=True)
class Routed:
    """A micro-batch after routing: each job's instance, its voted and mapped skills, its recruitment."""

    instances: dict[str, Instance]
    skills: dict[str, list[str]]
    mapped: dict[str, list[str]]
    recruits: dict[tuple[str, int, str], Recruitment]  # (instance, k, policy) -> its recruitment


def job_instance(job: Job) -> Instance:
    """The Instance a request asks about; identical questions share an id (and cached work)."""
    iid = "q-" + stable_hash([job.prompt, job.choices], 16)
    if job.answer_type != "auto":
        kind = job.answer_type
    else:  # options given, or written into the question as "(A) ...": a choice question
        kind = CHOICE if job.choices or "(A)" in job.question else MATH
    return Instance(iid, "all", job.prompt, "", kind, job.choices)


def _tokens(generations) -> dict:
    """Prompt and completion tokens of some generations, summed."""
    return {"prompt_tokens": sum(g.prompt_tokens for g in generations),
            "completion_tokens": sum(g.output_tokens for g in generations)}


class OnlineRouter:
    """Serves micro-batches of jobs through a generation service (its executor and caches)."""

    def __init__(self, cfg: RunConfig, generation: GenerationService, preparation: ServingPreparation,
                 embed: Embedder):
        self.cfg = cfg
        self.generation = generation
        self.prep = preparation
        self.embed = embed
        self.experts = [s.name for s in self.cfg.experts]
        self.skill_usage: dict[str, dict] = {}  # instance id -> the keyword model's tokens of its last batch
        self.recent: dict[str, float] = {}  # expert -> decayed count of its recent recruitments
        self.val_evidence: QuestionEvidence | None = None  # the validation side of the embedding routers
        self.generation.rank_residents(self._rank())

    def warm_order(self) -> list[str]:
        """What the warm-up loads, in order: the keyword model, the aggregator, then the experts the
        validation split would recruit most (estimated: each skill's share of the validation questions
        times the expert's local suitability on it, summed)."""
        dist, profiles = self.prep.distribution, self.prep.profiles

        def weight(expert: str) -> float:
            return sum(
                share * max(profiles.get(expert, {}).get(skill, 0), 0) for skill, share in dist.items()
            )

        experts = sorted(self.experts, key=lambda e: -weight(e))
        return list(dict.fromkeys([self.cfg.skills.keyword_model, self.prep.aggregator, *experts]))

    def _rank(self) -> dict[str, float]:
        return {
            **self.recent,
            self.cfg.skills.keyword_model: ALWAYS_NEEDED,
            self.prep.aggregator: ALWAYS_NEEDED,
        }

    def _remember(self, recruits: dict[tuple[str, int, str], Recruitment]) -> None:
        """Decay the recent recruitment counts and add this batch's.

        These counts are what the eviction rule ranks experts by.
        """
        self.recent = {e: n * RECENT_DECAY for e, n in self.recent.items()}
        for rec in recruits.values():
            for expert in rec.experts:
                self.recent[expert] = self.recent.get(expert, 0.0) + 1
        self.generation.rank_residents(self._rank())

    # -- phases ---------------------------------------------------------------------------------

    def _skills(self, instances: Sequence[Instance]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """Voted keywords per instance from one keyword-model call, and the error of each instance whose
        keyword requests failed (the others of the batch go on). ``skill_usage`` keeps each instance's
        keyword-model tokens."""
        sk = self.cfg.skills
        pairs = skill_requests(instances, self.cfg.pool[sk.keyword_model], sk, self.cfg.seed,
                               self.cfg.prompts)
        generations = self.generation.phase("online_skills", pairs, self.experts)
        errors = {request.instance_id: g.error for (_, request), g in zip(pairs, generations) if g.failed}
        replies = [(request.instance_id, g.text) for (_, request), g in zip(pairs, generations)
                   if request.instance_id not in errors]
        for inst in instances:
            own = [g for (_, r), g in zip(pairs, generations) if r.instance_id == inst.id]
            self.skill_usage[inst.id] = _tokens(own)
        ids = [inst.id for inst in instances if inst.id not in errors]
        _, kept = annotate(ids, replies, sk.max_chars, sk.min_votes) if ids else (None, {})
        return kept, errors

    def _map(self, skills: dict[str, list[str]]) -> dict[str, list[str]]:
        keywords = sorted({k for ks in skills.values() for k in ks})
        mapping = map_keywords(keywords, self.prep.vocabulary, self.embed)
        return map_instance_skills(skills, mapping, repeats=self.cfg.skills.repeated == "count")

    def _policy(self, method: str) -> str:
        """The recruitment policy of a method: a rival router's own, else the configured one."""
        return method if METHODS.get(method).own_policy else self.cfg.recruit.policy

    def _key(self, job: Job, instances: dict[str, Instance]) -> tuple[str, int, str]:
        """(instance, k, policy) of a job's recruitment."""
        return instances[job.request_id].id, job.k, self._policy(job.method)

    def _recruit(self, mapped: dict[str, list[str]], wanted: Sequence[tuple[str, int, str]],
                 questions: dict[str, Instance]) -> dict[tuple[str, int, str], Recruitment]:
        """Recruitments of (instance, k, policy) triples with the batch path's policies, one call per (k,
        policy): ``budgeted`` then assigns over the micro-batch as the batch path does over the test set.
        The models resident in the scheduler now are passed as data (``recruit.cold_factor`` reads them)."""
        out = {}
        resident = frozenset(self.generation.resident_experts())
        for k, policy in dict.fromkeys((k, p) for _, k, p in wanted):
            ids = list(dict.fromkeys(iid for iid, kk, p in wanted if (kk, p) == (k, policy)))
            evidence = self._evidence(ids, questions) if RECRUIT_POLICIES.get(policy).embeds else None
            rc = replace(self.cfg.recruit, k=k, policy=policy)
            result = recruit_with_policy({iid: mapped[iid] for iid in ids}, self.prep.profiles,
                                         self.prep.distribution, self.experts, rc, self.cfg.seed, evidence,
                                         resident=resident)
            out.update({(r.instance_id, k, policy): r for r in result.recruitments})
        return out

    def _evidence(self, ids: Sequence[str], questions: dict[str, Instance]) -> QuestionEvidence:
        """The embedding routers' data: the validation questions' (embedded on first use) and these."""
        if self.val_evidence is None:
            prep = self.prep
            self.val_evidence = QuestionEvidence.embed(self.embed, prep.val_questions, prep.correct, {})
        vectors = np.asarray(self.embed([question_text(questions[i]) for i in ids]), dtype=float)
        return replace(self.val_evidence, test_embeddings=dict(zip(ids, vectors)))

    def _plans(
        self, jobs: Sequence[Job], instances: dict[str, Instance], recruits: dict
    ) -> dict[tuple, object]:
        """One plan per (method, k, the request's own sampling) over the jobs that asked for it."""
        plans = {}
        by_id = {inst.id: inst for inst in instances.values()}
        for key in dict.fromkeys((j.method, j.k, j.sampling) for j in jobs):
            method, k, sampling = key
            ids = list(
                dict.fromkeys(instances[j.request_id].id for j in jobs if (j.method, j.k, j.sampling) == key)
            )
            recruited = {i: recruits[(i, k, self._policy(method))] for i in ids}
            own = METHODS.get(method).own_policy  # a rival router: its plan reads its own recruitments
            ctx = MethodContext.for_run(self.cfg, [by_id[i] for i in ids], recruited, self.prep.aggregator,
                                        self.prep.val_accuracy, k=k,
                                        routed={method: recruited} if own else None)
            plan = next(p for p in build_plans([method], ctx) if p.name == method)
            plan.name = f"{method}/k{k}" + (
                "" if sampling == ReplySampling() else f"/{stable_hash(asdict(sampling), 12)}"
            )
            plans[key] = plan
        return plans

    # -- a batch --------------------------------------------------------------------------------

    def answer(
        self,
        jobs: Sequence[Job],
        deliver: Callable[[int, Outcome], None] | None = None,
        deferrable: Sequence[bool] | None = None,
    ) -> list:
        """Outcomes for a batch of jobs, in order.

        Swap-aware (``deliver`` given, :class:`~skillmoe_ray.serving.batching.MicroBatcher` with
        ``max_defer_s``): the jobs whose models (recruited experts and aggregator) are all resident are
        answered first and delivered at once; a job needing a cold model that is still ``deferrable`` gets
        :data:`~skillmoe_ray.serving.batching.DEFER` (it waits for the next batch, to share the load) unless
        the loads of the jobs that may not wait cover its cold models; the other cold jobs are answered
        last, together."""
        instances = {j.request_id: job_instance(j) for j in jobs}
        # the keyword model reads the last user message only; the answers phases the whole conversation
        last_turns = {
            instances[j.request_id].id: replace(instances[j.request_id], question=j.question) for j in jobs
        }
        skills, failures = self._skills(list(last_turns.values()))
        outcomes: list = [None] * len(jobs)
        ok = []  # a job whose keywords failed fails alone; the others go on
        for i, j in enumerate(jobs):
            if instances[j.request_id].id in failures:
                outcomes[i] = Outcome(502, error=failures[instances[j.request_id].id])
                if deliver is not None:
                    deliver(i, outcomes[i])
            else:
                ok.append(i)
        if ok:
            routed_deliver = None if deliver is None else (lambda k, outcome: deliver(ok[k], outcome))
            answered = self._route(
                [jobs[i] for i in ok],
                instances,
                skills,
                routed_deliver,
                [deferrable[i] for i in ok] if deferrable else None,
            )
            for i, outcome in zip(ok, answered):
                outcomes[i] = outcome
        return outcomes

    def _route(
        self,
        jobs: Sequence[Job],
        instances: dict[str, Instance],
        skills: dict[str, list[str]],
        deliver: Callable[[int, Outcome], None] | None,
        deferrable: Sequence[bool] | None,
    ) -> list:
        """Recruitment and answers of the jobs whose keywords were found.

        Swap-aware when ``deliver`` is given.
        """
        mapped = self._map(skills)
        questions = {inst.id: inst for inst in instances.values()}
        recruits = self._recruit(mapped, [self._key(j, instances) for j in jobs], questions)
        self._remember(recruits)
        routed = Routed(instances, skills, mapped, recruits)
        if deliver is None:
            return self._answer_jobs(jobs, routed)
        cold = self._cold(jobs, routed)
        outcomes: list = [None] * len(jobs)
        deferrable = deferrable or [False] * len(jobs)
        # the loads this batch pays anyway (for the jobs that may not wait longer) also serve any other job
        # whose cold models they cover: it joins them instead of waiting for a later load
        loading = set().union(*(cold[i] for i in range(len(jobs)) if cold[i] and not deferrable[i]))
        for part in (
            [i for i in range(len(jobs)) if not cold[i]],
            [i for i in range(len(jobs)) if cold[i] and (not deferrable[i] or cold[i] <= loading)],
        ):
            for i, outcome in zip(part, self._answer_jobs([jobs[i] for i in part], routed) if part else []):
                outcomes[i] = outcome
                deliver(i, outcome)
        return [DEFER if o is None else o for o in outcomes]

    def _cold(self, jobs: Sequence[Job], routed: Routed) -> list[set[str]]:
        """Per job: the models it needs that are not resident now (recruited experts, the aggregator)."""
        resident = set(self.generation.resident_experts())
        return [
            set() if j.route_only
            else {*routed.recruits[self._key(j, routed.instances)].experts, self.prep.aggregator} - resident
            for j in jobs
        ]

    def _answer_jobs(self, jobs: Sequence[Job], routed: Routed) -> list[Outcome]:
        """Outcomes of routed jobs: their plans run together, each expert phase grouped by expert."""
        instances = routed.instances
        unique = list({instances[j.request_id].id: instances[j.request_id] for j in jobs}.values())
        answering = [j for j in jobs if not j.route_only]
        plans = self._plans(answering, instances, routed.recruits)
        runner = PlanRunner(
            self.cfg,
            unique,
            self.generation.phase,
            steer=self._steer(routed.mapped),
            reply={plan.name: key[2] for key, plan in plans.items() if key[2] != ReplySampling()},
        )
        runs = (
            {key: run for key, run in zip(plans, runner.run(list(plans.values())).values())} if plans else {}
        )
        return [
            self._outcome(
                j, instances[j.request_id], routed.skills, routed.mapped, routed.recruits, runner, runs
            )
            for j in jobs
        ]

    def _steer(self, mapped: dict[str, list[str]]):
        """DSMoE steering of the batch's answers from MoE experts (None when steering is off)."""
        prep = self.prep.steering
        if prep is None:
            return None
        return steerer(prep.tables, query_domains(mapped, prep.skill_domains), prep.alpha)

    def _outcome(self, job, inst, skills, mapped, recruits, runner, runs) -> Outcome:
        rec = recruits[(inst.id, job.k, self._policy(job.method))]
        details = {
            "method": job.method,
            "skills": skills[inst.id],
            "mapped_skills": mapped[inst.id],
            "probabilities": rec.probabilities,
            "route_only": job.route_only,
        }
        if job.route_only:
            details.update(
                experts=list(rec.experts),
                aggregator=self.prep.aggregator,
                predicted_cost=self._predicted_cost(rec.experts),
            )
            return Outcome(200, content="", finish_reason="route_only", skillmoe=details)
        run: PlanRun = runs[(job.method, job.k, job.sampling)]
        keys = [key for _, key in run.first_round.get(inst.id, [])]
        final_key = run.final_keys.get(inst.id)
        used = [runner.records[k] for k in keys + ([final_key] if final_key else [])]
        errors = [g.error for g in used if g.failed]
        if errors:
            return Outcome(502, error=errors[0], skillmoe=details)
        answer = run.answers.get(inst.id)
        details.update(
            experts=[e for e, _ in run.first_round.get(inst.id, [])],
            aggregator=run.plan.aggregator.get(inst.id),
            answer=answer,
        )
        reply = runner.records[final_key] if final_key else self._voted(run, inst, answer, runner)
        details["usage"] = {
            "keywords": self.skill_usage.get(inst.id, _tokens([])),
            "experts": _tokens([runner.records[k] for k in keys]),
            "aggregator": _tokens([reply] if final_key else []),
        }
        text, cut = apply_stop(reply.text if reply else "", job.stop)
        finish = "stop" if cut else (reply.finish_reason if reply else None) or "stop"
        return Outcome(
            200, content=text, finish_reason=finish, usage=_tokens([reply] if reply else []), skillmoe=details
        )

    def _voted(self, run: PlanRun, inst: Instance, answer: str | None, runner: PlanRunner):
        """Without an aggregator, the reply is the first response that gave the voted answer."""
        texts = run.responses.get(inst.id, [])
        keys = [key for _, key in run.first_round.get(inst.id, [])]
        tag = self.cfg.aggregator.think_end_tag
        index = next((i for i, t in enumerate(texts) if extract_answer(t, inst, tag) == answer), 0)
        return runner.records[keys[index]] if index < len(keys) else None

    def _predicted_cost(self, experts: Sequence[str]) -> dict:
        """What answering would take: engine calls, an output-token bound, and experts not resident now."""
        calls = sorted(set(experts)) + [self.prep.aggregator]
        resident = set(self.generation.resident_experts())
        return {
            "expert_calls": len(experts) + 1,
            "max_output_tokens": sum(self.cfg.pool[e].max_tokens for e in [*experts, self.prep.aggregator]),
            "cold_experts": [e for e in dict.fromkeys(calls) if e not in resident],
        }
