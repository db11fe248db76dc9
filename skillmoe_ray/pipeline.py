"""The Symbolic-MoE batch pipeline (DESIGN section 3), stage by stage, over any executor.

Each stage's result is stored in the shared :class:`StageCache` under a hash of its inputs, and
every generation in the :class:`GenerationStore` under its request key. A stage whose result is
cached is skipped; a stage that must run asks the executor only for the requests not yet stored,
grouped by expert, and stores each group's outputs as soon as the group finishes.

With ``steering.enabled``, a ``steering`` stage before the test-time phases identifies each MoE
expert's domain experts (DSMoE, :mod:`skillmoe_ray.method.steering`), and its answers are steered.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from skillmoe_ray.config import GenerationConfig, RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.engines.base import Steering
from skillmoe_ray.forecast.measurements import Measurements
from skillmoe_ray.generation import GenerationService
from skillmoe_ray.method.aggregate import extract_answer, is_correct
from skillmoe_ray.method.catalog import MethodContext, build_plans
from skillmoe_ray.method.profiles import (
    build_profiles,
    competence_distribution,
    global_competence,
    select_aggregator,
)
from skillmoe_ray.method.recruit import recruit_settings, recruit_with_policy
from skillmoe_ray.method.requests import (
    aggregation_request,
    analysis_requests,
    profile_requests,
    skill_requests,
    synthetic_tasks,
)
from skillmoe_ray.method.results import (
    AggregatorSelection,
    ModelProfiles,
    RecruitmentStage,
    ServingPreparation,
    SkillAnnotation,
    SkillMapping,
    SteeringPrep,
    SteeringTables,
)
from skillmoe_ray.method.rivals import QuestionEvidence
from skillmoe_ray.method.runner import PlanRun, PlanRunner
from skillmoe_ray.method.skills import (
    annotate,
    build_vocabulary,
    load_embedder,
    map_instance_skills,
    map_keywords,
    question_text,
)
from skillmoe_ray.method.steering import choose_experts, query_domains, score_experts, skill_domains, steerer
from skillmoe_ray.records import GenerationCounts, StageRecord
from skillmoe_ray.registry import METHODS, RECRUIT_POLICIES
from skillmoe_ray.reporting import artifacts
from skillmoe_ray.reporting.evaluate import evaluate, gold_skill_accuracy, validation_accuracy
from skillmoe_ray.reporting.run_result import Execution, Routing, RunResult
from skillmoe_ray.scheduling.executor import SlotExecutor

log = logging.getLogger(__name__)
RUN_METHODS = ("symbolic_moe", "majority_vote")  # what mode=run reports; mode=compare runs compare.methods


class Pipeline:
    """Runs every stage for one configuration; the executor decides where experts run."""

    def __init__(self, cfg: RunConfig, executor: SlotExecutor, embedder_factory: Callable = load_embedder,
                 failures: str = "stop", on_stage: Callable[[dict], None] | None = None):
        """``failures``: "stop" (batch runs: a failed expert stops the run) or "report" (its requests are
        answered with an error), and ``on_stage`` (each stage's row as it ends): the
        :class:`GenerationService`'s."""
        self.cfg = cfg
        self.executor = executor
        self.embedder_factory = embedder_factory
        self.evidence: QuestionEvidence | None = None  # the questions, embedded once for all routers
        self.generation = GenerationService(cfg, executor, failures, on_stage)
        self.run_dir = Path(cfg.run_dir)
        self.measurements = Measurements(cfg.cache_dir)

    # -- stages ---------------------------------------------------------------------------------

    def annotate_skills(self, instances: Sequence[Instance]) -> SkillAnnotation:
        """Keyword samples per instance, parsed and vote-filtered."""
        sk = self.cfg.skills
        pairs = skill_requests(instances, self.cfg.pool[sk.keyword_model], sk, self.cfg.seed,
                               self.cfg.prompts)

        def compute() -> tuple[SkillAnnotation, GenerationCounts]:
            outputs, counts = self.generation.generate("skills", pairs, [s.name for s in self.cfg.experts])
            replies = [(request.instance_id, out.text) for (_, request), out in zip(pairs, outputs)]
            samples, kept = annotate([inst.id for inst in instances], replies, sk.max_chars, sk.min_votes)
            return SkillAnnotation(samples, kept), counts

        inputs = [self.generation.keys(pairs), sk.min_votes, sk.max_chars]
        return self.generation.cached_stage("skills", inputs, compute, SkillAnnotation)

    def build_profiles(self, val: Sequence[Instance], val_skills: dict[str, list[str]]) -> ModelProfiles:
        """Every expert answers every validation question; +1/-1 per skill; global competence."""
        pairs = profile_requests(val, self.cfg.experts, self.cfg.profiles, self.cfg.seed, self.cfg.prompts)

        def compute() -> tuple[ModelProfiles, GenerationCounts]:
            outputs, counts = self.generation.generate("profiles", pairs, self.cfg.aggregator_candidates())
            by_id = {inst.id: inst for inst in val}
            answers: dict[str, dict] = {s.name: {} for s in self.cfg.experts}
            correct: dict[str, dict] = {s.name: {} for s in self.cfg.experts}
            keys: dict[str, dict] = {s.name: {} for s in self.cfg.experts}
            for (expert, request), out in zip(pairs, outputs):
                inst = by_id[request.instance_id]
                answers[expert][inst.id] = extract_answer(out.text, inst, self.cfg.aggregator.think_end_tag,
                                                          out.finish_reason)
                correct[expert][inst.id] = is_correct(answers[expert][inst.id], inst)
                keys[expert][inst.id] = out.key
            profiles = build_profiles(val_skills, correct)
            return ModelProfiles(answers, correct, keys, profiles, global_competence(profiles)), counts

        result = self.generation.cached_stage("profiles", [self.generation.keys(pairs), val_skills], compute,
                                              ModelProfiles)
        # Derived, not cached: a sweep over the temperature reuses the profile stage as it is.
        dist = competence_distribution(result.competence, self.cfg.recruit.competence_temperature)
        return replace(result, distribution=dist)

    def map_skills(self, val_skills: dict[str, list[str]], test_skills: dict[str, list[str]]) -> SkillMapping:
        """Validation keywords form the vocabulary; test keywords map to their nearest vocabulary skill."""
        vocabulary = build_vocabulary(val_skills)
        keywords = sorted({k for ks in test_skills.values() for k in ks})

        def compute() -> tuple[SkillMapping, None]:
            unknown = [k for k in keywords if k not in set(vocabulary)]
            embed = self.embedder_factory(self.cfg.skills.embedding_model) if unknown and vocabulary else None
            mapping = map_keywords(keywords, vocabulary, embed)
            return SkillMapping(vocabulary, mapping, map_instance_skills(test_skills, mapping),
                                map_instance_skills(test_skills, mapping, repeats=True)), None

        inputs = [vocabulary, test_skills, self.cfg.skills.embedding_model]
        return self.generation.cached_stage("mapping", inputs, compute, SkillMapping)

    def recruit(self, test: Sequence[Instance], mapped: dict[str, list[str]], profiles: ModelProfiles,
                val: Sequence[Instance] = (), policy: str | None = None) -> RecruitmentStage:
        """Recruit experts for every test instance with the configured policy (or ``policy``, a rival
        router's recruitment in a comparison): them, and its report. A policy that routes by question
        embeddings embeds the validation and test questions when its stage is not cached.

        Instances go in the test split's order; with ``recruit.cold_factor`` below 1 nothing is resident at
        the start, and experts recruited for earlier instances count as resident (already planned)."""
        rc = self.cfg.recruit if policy is None else replace(self.cfg.recruit, policy=policy)
        pool = [s.name for s in self.cfg.experts]
        instance_skills = {inst.id: mapped.get(inst.id, []) for inst in test}
        embeds = RECRUIT_POLICIES.get(rc.policy).embeds

        def compute() -> tuple[RecruitmentStage, None]:
            evidence = self.question_evidence(val, test, profiles.correct) if embeds else None
            result = recruit_with_policy(instance_skills, profiles.profiles, profiles.distribution, pool, rc,
                                         self.cfg.seed, evidence)
            return RecruitmentStage(result.recruitments, result.info), None

        inputs = [instance_skills, profiles.profiles, profiles.distribution, pool, recruit_settings(rc),
                  self.cfg.seed]
        if embeds:
            questions = [[inst.id, question_text(inst)] for inst in [*val, *test]]
            inputs += [asdict(rc), questions, profiles.correct, self.cfg.skills.embedding_model]
        name = "recruitment" if policy is None else f"recruitment_{policy}"
        return self.generation.cached_stage(name, inputs, compute, RecruitmentStage)

    def question_evidence(self, val: Sequence[Instance], test: Sequence[Instance],
                          correct: dict[str, dict[str, bool]]) -> QuestionEvidence:
        """The validation and test questions embedded by the skill mapping's sentence encoder, with the
        profiles' grading: what the embedding routers read (embedded once per run, whatever reads it)."""
        if self.evidence is None:
            embed = self.embedder_factory(self.cfg.skills.embedding_model)
            self.evidence = QuestionEvidence.embed(embed, {i.id: question_text(i) for i in val}, correct,
                                                   {i.id: question_text(i) for i in test})
        return self.evidence

    def rival_recruitments(self, val: Sequence[Instance], test: Sequence[Instance], mapped: dict,
                           profiles: ModelProfiles) -> dict[str, RecruitmentStage]:
        """The recruitments of the compared methods that recruit with a policy of their own (the rival
        routers), from the same cached validation answers."""
        if self.cfg.mode != "compare":
            return {}
        own = [name for name in dict.fromkeys(self.cfg.compare.methods) if METHODS.get(name).own_policy]
        return {name: self.recruit(test, mapped, profiles, val, policy=name) for name in own}

    def profile_texts(self, val: Sequence[Instance]) -> dict[str, dict[str, str]]:
        """Every expert's profile answer text per validation instance, from the store.

        An answer missing there (a deleted or damaged shard) is generated again, never read as empty:
        the synthetic tasks, and so the aggregator chosen, are those of an uninterrupted run.
        """
        pairs = profile_requests(val, self.cfg.experts, self.cfg.profiles, self.cfg.seed, self.cfg.prompts)
        outputs, counts = self.generation.generate("profiles", pairs)
        if counts.generated:
            log.warning("regenerated %d profile answers missing from the generation store", counts.generated)
        texts: dict[str, dict[str, str]] = {spec.name: {} for spec in self.cfg.experts}
        for (expert, request), out in zip(pairs, outputs):
            texts[expert][request.instance_id] = out.text
        return texts

    def _aggregator_generation(self) -> GenerationConfig:
        agg = self.cfg.aggregator
        return GenerationConfig(temperature=agg.temperature, max_tokens=agg.max_tokens)

    def select_aggregator(self, val: Sequence[Instance], profiles: ModelProfiles,
                          next_experts: Iterable[str]) -> AggregatorSelection:
        """Each candidate answers the synthetic 1-correct/2-incorrect tasks; the most accurate wins."""
        agg = self.cfg.aggregator
        if agg.fixed:
            self.generation.end_stage("aggregator_selection", StageRecord(cached=True, fixed=agg.fixed))
            return AggregatorSelection(agg.fixed, {}, True)
        candidates = self.cfg.aggregator_candidates()
        tasks = synthetic_tasks(val, self.profile_texts(val), profiles.correct, self.cfg.seed)
        gen = self._aggregator_generation()
        pairs = [
            (c,
             aggregation_request(inst, tasks[inst.id], self.cfg.pool[c], gen, agg.think_end_tag,
                                 self.cfg.seed, "select",
                                    self.cfg.prompts))
            for c in candidates
            for inst in val
        ]

        by_id = {inst.id: inst for inst in val}

        def compute() -> tuple[AggregatorSelection, GenerationCounts]:
            outputs, counts = self.generation.generate("aggregator_selection", pairs, next_experts)
            hits = {c: 0 for c in candidates}
            for (c, request), out in zip(pairs, outputs):
                inst = by_id[request.instance_id]
                answer = extract_answer(out.text, inst, agg.think_end_tag, out.finish_reason)
                hits[c] += is_correct(answer, inst)
            accuracy = {c: hits[c] / len(val) for c in candidates}
            return AggregatorSelection(select_aggregator(accuracy, candidates), accuracy, False), counts

        return self.generation.cached_stage("aggregator_selection", self.generation.keys(pairs), compute,
                                            AggregatorSelection)

    def run_methods(self, val: Sequence[Instance], test: Sequence[Instance], routing: Routing,
                    steer: Callable[[str, str], Steering | None] | None,
                    ) -> tuple[PlanRunner, dict[str, PlanRun]]:
        """Build the configured methods' plans and run them together on the test set."""
        recruited = {r.instance_id: r for r in routing.recruitment.recruitments}
        routed = {name: {r.instance_id: r for r in stage.recruitments}
                  for name, stage in routing.rivals.items()}
        ctx = MethodContext.for_run(self.cfg, test, recruited, routing.selection.selected,
                                    validation_accuracy(val, routing.profiles.correct),
                                    skill_accuracy=routing.skill_accuracy, routed=routed)
        names = self.cfg.compare.methods if self.cfg.mode == "compare" else RUN_METHODS
        # Several GPUs stream each instance's aggregation onto the aggregator's GPU as soon as its answers
        # exist; with replicas, the aggregation stage is instead dealt out over copies of the aggregator.
        streaming = self.executor.policy.n_slots > 1 and self.executor.policy.max_replicas <= 1
        lookup = self.generation.lookup if streaming else None
        runner = PlanRunner(self.cfg, test, self.generation.phase, lookup, final=True, steer=steer)
        return runner, runner.run(build_plans(names, ctx))

    def steering_prep(self, val: Sequence[Instance], val_skills: dict[str, list[str]]) -> SteeringPrep | None:
        """DSMoE (when enabled): each MoE expert's internal experts per domain (validation task), from
        its routing on the validation questions, with each skill's domain and alpha; None when off."""
        st = self.cfg.steering
        if not st.enabled:
            return None
        pairs = analysis_requests(val, [s for s in self.cfg.experts if s.moe], self.cfg.inference,
                                  self.cfg.seed,
                                  self.cfg.prompts)
        domain_of = {inst.id: inst.task for inst in val}

        def compute() -> tuple[SteeringTables, GenerationCounts]:
            records: dict[str, list] = {}
            outputs, counts = self.generation.generate("steering", pairs)
            for (expert, request), out in zip(pairs, outputs):
                domain, router = domain_of[request.instance_id], out.router
                fields = ("bins", "common") if st.score == "paper" else ("counts", "saliency")
                records.setdefault(expert, []).append((domain, *(router[f] for f in fields)))
            tables = {e: choose_experts(score_experts(rs, st), st) for e, rs in records.items()}
            return SteeringTables(tables), counts

        inputs = [self.generation.keys(pairs), domain_of, st.experts_per_layer, st.count_weight, st.score,
                  st.selection,
                  st.saliency_percentile, st.top_fraction]
        tables = self.generation.cached_stage("steering", inputs, compute, SteeringTables).tables
        return SteeringPrep(tables, skill_domains(val_skills, domain_of), st.alpha)

    def steering(self, val: Sequence[Instance], val_skills: dict[str, list[str]],
                 test_skills: dict[str, list[str]]) -> tuple[Callable | None, dict | None]:
        """The steering of each test answer (DSMoE, when enabled) and its summary for results.json."""
        prep = self.steering_prep(val, val_skills)
        if prep is None:
            return None, None
        domains = query_domains(test_skills, prep.skill_domains)
        summary = {"alpha": prep.alpha,
                   "experts": {e: {d: len(p) for d, p in t.items()} for e, t in prep.tables.items()},
                   "test_domains": dict(Counter(d or "(none)" for d in domains.values()))}
        return steerer(prep.tables, domains, prep.alpha), summary

    # -- the whole run --------------------------------------------------------------------------

    def prepare(self, val: list[Instance]) -> ServingPreparation:
        """What online serving needs from a batch run, built (or read from the cache) on validation data.

        The vocabulary, the profiles and competence distribution, each model's validation accuracy
        (for the baselines), the selected aggregator, the DSMoE steering tables (None when off), and the
        validation questions with every model's grading on them (for the embedding routers).
        """
        skills = self.annotate_skills(val)
        val_skills = {inst.id: skills.skills[inst.id] for inst in val}
        profiles = self.build_profiles(val, val_skills)
        selection = self.select_aggregator(val, profiles, [])
        return ServingPreparation(build_vocabulary(val_skills), profiles.profiles, profiles.distribution,
                                  validation_accuracy(val, profiles.correct), selection.selected,
                                  self.steering_prep(val, val_skills),
                                  {inst.id: question_text(inst) for inst in val}, profiles.correct)

    def route(self, val: list[Instance], test: list[Instance]) -> tuple[Routing, Callable | None]:
        """The stages before the test-time answers, in order (skills, profiles, mapping, recruitment, the
        aggregator, steering): what they decided, and the steering of each test answer (None when off)."""
        skills = self.annotate_skills(val + test)
        val_skills = {inst.id: skills.skills[inst.id] for inst in val}
        test_skills = {inst.id: skills.skills[inst.id] for inst in test}
        profiles = self.build_profiles(val, val_skills)
        mapping = self.map_skills(val_skills, test_skills)
        # Recruitment may count a repeated skill once per keyword (skills.repeated=count); reports count it
        # once.
        recruited_skills = (
            mapping.mapped_with_repeats if self.cfg.skills.repeated == "count" else mapping.mapped
        )
        recruitment = self.recruit(test, recruited_skills, profiles, val)
        rivals = self.rival_recruitments(val, test, recruited_skills, profiles)
        stages = [recruitment, *rivals.values()]
        recruited = {e for stage in stages for r in stage.recruitments for e in r.experts}
        selection = self.select_aggregator(val, profiles, recruited)
        steer, steering = self.steering(val, val_skills, mapping.mapped)
        skill_accuracy = gold_skill_accuracy(val, profiles.correct)
        routing = Routing(skills, profiles, mapping, recruitment, selection, skill_accuracy, steering, rivals)
        return routing, steer

    def run(self, val: list[Instance], test: list[Instance]) -> dict:
        """Every stage in order; writes the run directory's artifacts and returns results.json's content."""
        start = time.perf_counter()
        routing, steer = self.route(val, test)
        runner, runs = self.run_methods(val, test, routing, steer)
        summary = self.executor.summary()
        self.measurements.record_timeline(summary.to_json()["timeline"], self.generation.fingerprints)
        measured = lambda expert: self.measurements.activation_seconds(self.generation.fingerprints[expert])  # noqa: E731
        execution = Execution(dict(self.generation.stages), summary, round(time.perf_counter() - start, 3))
        result = RunResult(val, test, routing, runner, runs, execution)
        results, rows = evaluate(self.cfg, result, measured)
        artifacts.write_run(self.run_dir, result, rows, results)
        return results
