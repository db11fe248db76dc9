"""Typed results of the method's stages, as they cross modules, processes and the stage cache.

Each is a frozen dataclass with a JSON round trip (:meth:`StageResult.to_json` / :meth:`from_json`): the
stage cache stores the JSON, the pipeline, the run directory's artifacts and online serving read fields.
Field names are the keys the stage cache has always held, so entries written before these types read back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from skillmoe_ray.method.recruit import Recruitment

T = TypeVar("T", bound="StageResult")


class StageResult:
    """A stage's result: plain JSON values in named fields."""

    def to_json(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[T], data: dict) -> T:
        """The result stored as ``data``.

        A missing field without a default raises ValueError (a damaged entry).
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        missing = [
            n
            for n, f in known.items()
            if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing or not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: missing {', '.join(missing) or 'everything'}")
        return cls(**{n: data[n] for n in known if n in data})


def _plain(value: Any) -> Any:
    return value.to_json() if isinstance(value, StageResult) else value


@dataclass(frozen=True)
class SkillAnnotation(StageResult):
    """The keyword model's parsed samples per instance, and the skills that won the vote."""

    samples: dict[str, list[list[str]]]
    skills: dict[str, list[str]]


@dataclass(frozen=True)
class ModelProfiles(StageResult):
    """Every expert's validation answers, their grading and store keys, its skill profile (+1/-1 per
    skill) and global competence; ``distribution`` (derived, not cached) is the competence softmax."""

    answers: dict[str, dict[str, str | None]]
    correct: dict[str, dict[str, bool]]
    keys: dict[str, dict[str, str]]
    profiles: dict[str, dict[str, int]]
    competence: dict[str, float]
    distribution: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SkillMapping(StageResult):
    """The validation vocabulary, each test keyword's nearest vocabulary skill, and the mapped skills per
    test instance (once per skill, and with repeats for ``skills.repeated=count``)."""

    vocabulary: list[str]
    mapping: dict[str, str]
    mapped: dict[str, list[str]]
    mapped_with_repeats: dict[str, list[str]]


@dataclass(frozen=True)
class RecruitmentStage(StageResult):
    """Each test instance's recruitment and what the policy reports (stored as ``Recruitment.to_dict``)."""

    recruitments: list[Recruitment]
    info: dict

    def to_json(self) -> dict:
        return {"recruitments": [r.to_dict() for r in self.recruitments], "info": self.info}

    @classmethod
    def from_json(cls, data: dict) -> RecruitmentStage:
        stored = super().from_json(data)
        return cls([Recruitment.from_dict(r) for r in stored.recruitments], stored.info)


@dataclass(frozen=True)
class AggregatorSelection(StageResult):
    """The aggregator chosen (by accuracy on the synthetic tasks, or fixed by the config)."""

    selected: str
    accuracy: dict[str, float]
    fixed: bool


@dataclass(frozen=True)
class SteeringTables(StageResult):
    """DSMoE: each MoE expert's chosen internal experts per domain."""

    tables: dict


@dataclass(frozen=True)
class SteeringPrep(StageResult):
    """What steering a question needs: the tables, each validation skill's domain, and the strength."""

    tables: dict
    skill_domains: dict[str, str]
    alpha: float


@dataclass(frozen=True)
class ServingPreparation(StageResult):
    """What online serving needs from a batch run on validation data (built or read from the cache)."""

    vocabulary: list[str]
    profiles: dict[str, dict[str, int]]
    distribution: dict[str, float]
    val_accuracy: dict[str, dict[str, float]]
    aggregator: str
    steering: SteeringPrep | None = None
    # the validation questions (id -> text) and every model's grading on them: the embedding routers' data
    val_questions: dict[str, str] = field(default_factory=dict)
    correct: dict[str, dict[str, bool]] = field(default_factory=dict)
