"""The typed result of a batch run, which the evaluation and the run directory's artifacts take whole.

The pipeline makes one :class:`RunResult` when its last stage ends: the data, what the stages before the
test-time answers decided (:class:`Routing`), the method runs, and how the run went (:class:`Execution`).
:func:`skillmoe_ray.reporting.evaluate.evaluate` turns it into results.json's content, and
:func:`skillmoe_ray.reporting.artifacts.write_run` into the run directory's files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from skillmoe_ray.data.instances import Instance
from skillmoe_ray.method.recruit import Recruitment
from skillmoe_ray.method.results import (
    AggregatorSelection,
    ModelProfiles,
    RecruitmentStage,
    SkillAnnotation,
    SkillMapping,
)
from skillmoe_ray.method.runner import PlanRun, PlanRunner
from skillmoe_ray.records import StageRecord
from skillmoe_ray.scheduling.timeline import ExecutorSummary


@dataclass(frozen=True)
class Routing:
    """What the stages before the test-time answers decided: every question's skills, the experts' profiles,
    the skill mapping, the recruitment, the aggregator; each expert's validation accuracy per gold skill
    (empty without gold skills), the steering summary for results.json (DSMoE; None when off), and the
    rival routers' own recruitments, by policy (the compared methods that recruit for themselves)."""

    skills: SkillAnnotation
    profiles: ModelProfiles
    mapping: SkillMapping
    recruitment: RecruitmentStage
    selection: AggregatorSelection
    skill_accuracy: dict[str, dict[str, float]]
    steering: dict | None = None
    rivals: dict[str, RecruitmentStage] = field(default_factory=dict)


@dataclass(frozen=True)
class Execution:
    """How the run went: each stage's record, the executor's summary (activations, the timeline, ...:
    spread into results.json as its ``to_json()`` gives them) and the run's wall seconds."""

    stages: dict[str, StageRecord]
    summary: ExecutorSummary
    wall_seconds: float


@dataclass(frozen=True)
class RunResult:
    """One batch run: validation and test data, routing, the method runs (and the runner holding their
    generations), and its execution."""

    val: Sequence[Instance]
    test: Sequence[Instance]
    routing: Routing
    runner: PlanRunner
    runs: Mapping[str, PlanRun]
    execution: Execution

    @property
    def recruitments(self) -> list[Recruitment]:
        return self.routing.recruitment.recruitments
