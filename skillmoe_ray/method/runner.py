"""Executing method plans on the test set: answers, MoA layers, aggregation, shared across methods.

All plans run together, phase by phase. Each phase is one executor stage over the union of the
plans' requests, deduplicated by request key, so every expert is activated once per phase however
many methods need it, and a (model, prompt, sample) two methods share is generated once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from skillmoe_ray.config import GenerationConfig, RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.engines.base import GenRequest, Steering
from skillmoe_ray.method.aggregate import extract_answer, is_correct, majority_vote
from skillmoe_ray.method.catalog import MethodPlan
from skillmoe_ray.method.requests import aggregation_request, answer_request
from skillmoe_ray.records import Generation
from skillmoe_ray.scheduling.grouping import ExpertGroup

# More expert groups to generate in the same stage, asked for as groups finish (streamed aggregation)
FollowUp = Callable[[], list[ExpertGroup]]


class Phase(Protocol):
    """How the runner generates (the generation service's ``phase``): one stage over (expert, request)
    pairs, answered aligned with them, each request generated once and cached.

    ``next_experts``: who the next stage needs (kept loaded); ``followup``: more groups for this stage,
    asked for as groups finish; ``later``: the experts any later stage needs (the rest can be unloaded).
    """

    def __call__(self, stage: str, pairs: list[tuple[str, GenRequest]], next_experts: Iterable[str],
                 followup: FollowUp | None = None,
                 later: Iterable[str] | None = None) -> list[Generation]: ...


class Lookup(Protocol):
    """The stored generation of a request on an expert, if there is one yet (the service's ``lookup``)."""

    def __call__(self, expert: str, request: GenRequest) -> Generation | None: ...


@dataclass(frozen=True)
class ReplySampling:
    """One request's own sampling of the generation that writes its reply: the aggregator's, or the
    answers' for a method without one (an online request's ``temperature``, ``max_tokens``, ``seed``).

    None keeps the configured value; ``max_tokens`` never exceeds the model's own budget; ``seed``
    replaces the run's seed in the derivation of that generation's seeds.
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def over(self, gen: GenerationConfig) -> GenerationConfig:
        """``gen`` with this request's values in place of the configured ones."""
        return GenerationConfig(
            temperature=gen.temperature if self.temperature is None else self.temperature,
            top_p=gen.top_p if self.top_p is None else self.top_p,
            max_tokens=self.max_tokens or gen.max_tokens,
        )

    def seed_over(self, seed: int) -> int:
        return seed if self.seed is None else self.seed


@dataclass
class PlanRun:
    """What one method produced: final answers, and every request it needed (for its cost)."""

    plan: MethodPlan
    first_round: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    responses: dict[str, list[str]] = field(default_factory=dict)
    # The engine's finish reason of each response, in the same order (a cut response has no answer).
    finishes: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[str, str | None] = field(default_factory=dict)
    final_keys: dict[str, str] = field(default_factory=dict)
    phase_requests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def use(self, phase: str, expert: str, generation: Generation) -> None:
        """Note that this method needed ``generation`` (by ``expert``) in ``phase``."""
        self.phase_requests.setdefault(phase, []).append((expert, generation.key))


class PlanRunner:
    """Runs plans phase by phase through ``generate`` (the generation service's cached, grouped phases);
    ``records`` holds every generation it read, by key.

    ``lookup`` (the stored generation of a request, if any): given, each instance's aggregation is streamed
    into the answers phase as soon as its answers are stored (several GPUs); None: it waits for its phase.
    ``final``: no work follows these plans (a batch run), so each phase can tell the executor
    which experts any later phase needs and the others are unloaded rather than put to sleep.
    Online serving leaves it False: the next request batch may need any expert.
    ``steer``: (expert, instance id) -> the DSMoE steering of that expert's answers (None: none).
    ``reply``: plan name -> the requests' own sampling of that plan's replies (online serving).
    """

    def __init__(self, cfg: RunConfig, test: Sequence[Instance], generate: Phase,
                 lookup: Lookup | None = None, final: bool = False,
                 steer: Callable[[str, str], Steering | None] | None = None,
                 reply: dict[str, ReplySampling] | None = None):
        self.cfg = cfg
        self.by_id = {inst.id: inst for inst in test}
        self.generate = generate
        self.lookup = lookup
        self.streaming = lookup is not None
        self.final = final
        self.steer = steer
        self.reply = reply or {}
        self.records: dict[str, Generation] = {}

    def run(self, plans: Sequence[MethodPlan]) -> dict[str, PlanRun]:
        runs = {p.name: PlanRun(p) for p in plans}
        self._answers(runs)
        for layer in range(2, max((p.layers for p in plans), default=1) + 1):
            self._refine(runs, layer)
        self._aggregate(runs)
        for run in runs.values():
            self._finalize(run)
        return runs

    def _phase(self, stage: str, wanted: list[tuple[PlanRun, str, str, GenRequest]], next_experts: list[str],
               followup: FollowUp | None = None, later: list[str] | None = None) -> list:
        """Generate every (run, instance, expert, request) in one stage; requests that several
        methods share are generated once (the pipeline deduplicates by request key).

        ``later``: the experts any later phase needs (passed on only when ``final``).
        """
        pairs = [(expert, request) for _, _, expert, request in wanted]
        options = {"followup": followup} if followup else {}
        if self.final and later is not None:
            options["later"] = later
        generations = self.generate(stage, pairs, next_experts, **options)
        out = []
        for (run, iid, expert, _), generation in zip(wanted, generations):
            self.records[generation.key] = generation
            run.use(stage, expert, generation)
            out.append((run, iid, generation))
        return out

    def _answers(self, runs: dict[str, PlanRun]) -> None:
        gen = self.cfg.inference
        wanted = []
        for run in runs.values():
            for iid, slots in run.plan.slots.items():
                inst = self.by_id[iid]
                own = self.reply.get(run.plan.name) if run.plan.aggregator.get(iid) is None else None
                answer_gen, seed = ((own.over(gen), own.seed_over(self.cfg.seed)) if own
                                    else (gen, self.cfg.seed))
                for expert, sample in slots:
                    request = answer_request(
                        inst, self.cfg.pool[expert], answer_gen, seed, sample, self.cfg.prompts
                    )
                    steering = self.steer(expert, iid) if self.steer else None
                    wanted.append(
                        (run, iid, expert, replace(request, steering=steering) if steering else request)
                    )
        followup = (
            self._streamed_aggregation(wanted)
            if self.streaming and all(r.plan.layers == 1 for r in runs.values())
            else None
        )
        answered = self._phase(
            "inference", wanted, self._after_answers(runs), followup, self._needed_after(runs, 1)
        )
        for (run, iid, generation), (_, _, expert, _) in zip(answered, wanted):
            run.first_round.setdefault(iid, []).append((expert, generation.key))
            run.responses.setdefault(iid, []).append(generation.text)
            run.finishes.setdefault(iid, []).append(generation.finish_reason)

    def _refine(self, runs: dict[str, PlanRun], layer: int) -> None:
        """MoA layer ``layer``: each proposer rewrites an answer given all answers of the layer before."""
        wanted = []
        for run in runs.values():
            if run.plan.layers < layer:
                continue
            for iid, previous in run.responses.items():
                for proposer in run.plan.proposers:
                    request = self._combine(iid, previous, proposer, self.cfg.inference, f"moa{layer}")
                    wanted.append((run, iid, proposer, request))
        new: dict[tuple[str, str], list[Generation]] = {}
        for run, iid, generation in self._phase(
            f"moa_layer_{layer}", wanted, self._aggregators(runs), later=self._needed_after(runs, layer)
        ):
            new.setdefault((run.plan.name, iid), []).append(generation)
        for (name, iid), generations in new.items():
            runs[name].responses[iid] = [g.text for g in generations]
            runs[name].finishes[iid] = [g.finish_reason for g in generations]

    def _aggregate(self, runs: dict[str, PlanRun]) -> None:
        wanted = [
            (run, iid, model, self._aggregation(run, iid, run.responses[iid], model))
            for run in runs.values()
            for iid, model in run.plan.aggregator.items()
            if model is not None
        ]
        for run, iid, generation in self._phase("aggregation", wanted, [], later=[]):
            run.final_keys[iid] = generation.key

    def _streamed_aggregation(self, wanted: list[tuple[PlanRun, str, str, GenRequest]]):
        """A follow-up for the answers phase: each instance's aggregation, as soon as its answers exist.

        The requests are the ones the aggregation phase builds later, so that phase finds them
        generated; an instance whose answers are not all stored yet simply waits for that phase.
        """
        slots: dict[tuple[str, str], tuple[PlanRun, list]] = {}
        for run, iid, expert, request in wanted:
            if run.plan.aggregator.get(iid):
                slots.setdefault((run.plan.name, iid), (run, []))[1].append((expert, request))

        def followup() -> list[ExpertGroup]:
            groups: dict[str, ExpertGroup] = {}
            for key, (run, answers) in list(slots.items()):
                found = [self.lookup(expert, request) for expert, request in answers]
                if not all(found):
                    continue
                del slots[key]
                model = run.plan.aggregator[key[1]]
                request = self._aggregation(run, key[1], [g.text for g in found], model)
                group = groups.setdefault(model, ExpertGroup(model, stage="aggregation"))
                if self.lookup(model, request) is None and request not in group.requests:
                    group.requests.append(request)
            return [g for g in groups.values() if g.requests]

        return followup

    def _aggregation(self, run: PlanRun, iid: str, responses: list[str], model: str) -> GenRequest:
        """The final aggregation of one instance: the configured sampling, or the request's own."""
        agg = self.cfg.aggregator
        gen = GenerationConfig(temperature=agg.temperature, max_tokens=agg.max_tokens)
        own = self.reply.get(run.plan.name)
        if own:
            return self._combine(
                iid, responses, model, own.over(gen), "aggregate", own.seed_over(self.cfg.seed)
            )
        return self._combine(iid, responses, model, gen, "aggregate")

    def _combine(
        self,
        iid: str,
        responses: list[str],
        model: str,
        gen: GenerationConfig,
        purpose: str,
        seed: int | None = None,
    ) -> GenRequest:
        inst = self.by_id[iid]
        spec = self.cfg.pool[model]
        return aggregation_request(
            inst,
            responses,
            spec,
            gen,
            self.cfg.aggregator.think_end_tag,
            self.cfg.seed if seed is None else seed,
            purpose,
            self.cfg.prompts,
        )

    def _finalize(self, run: PlanRun) -> None:
        tag = self.cfg.aggregator.think_end_tag
        for iid, inst in ((i, self.by_id[i]) for i in run.plan.slots):
            if iid in run.final_keys:
                final = self.records[run.final_keys[iid]]
                run.answers[iid] = extract_answer(final.text, inst, tag, final.finish_reason)
            else:
                texts = run.responses.get(iid, [])
                finishes = run.finishes.get(iid, []) + [""] * len(texts)  # "" where a caller set no reason
                answers = [extract_answer(t, inst, tag, f) for t, f in zip(texts, finishes)]
                run.answers[iid] = majority_vote(answers)

    def correct(self, run: PlanRun) -> dict[str, bool]:
        """Whether each final answer of a method is right."""
        return {iid: is_correct(answer, self.by_id[iid]) for iid, answer in run.answers.items()}

    @staticmethod
    def _after_answers(runs: dict[str, PlanRun]) -> list[str]:
        proposers = [p for run in runs.values() if run.plan.layers > 1 for p in run.plan.proposers]
        return proposers or PlanRunner._aggregators(runs)

    @staticmethod
    def _needed_after(runs: dict[str, PlanRun], layer: int) -> list[str]:
        """Experts any phase after answer layer ``layer`` needs: deeper MoA proposers, aggregators."""
        proposers = [p for run in runs.values() if run.plan.layers > layer for p in run.plan.proposers]
        return sorted({*proposers, *PlanRunner._aggregators(runs)})

    @staticmethod
    def _aggregators(runs: dict[str, PlanRun]) -> list[str]:
        return [m for run in runs.values() for m in run.plan.aggregator.values() if m is not None]
