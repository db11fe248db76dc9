"""Benchmark loading: hub datasets and local files become lists of :class:`Instance`."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Protocol

from skillmoe_ray.config import DataConfig, SplitSpec
from skillmoe_ray.data.instances import CHOICE, MATH, Instance
from skillmoe_ray.data.local import demo_data_path
from skillmoe_ray.errors import ConfigError, DataError
from skillmoe_ray.registry import DATA_SOURCES

__all__ = ["CHOICE", "MATH", "DataSource", "Instance", "load_data", "load_split", "demo_data_path", "sample"]

log = logging.getLogger(__name__)


class DataSource(Protocol):
    """What every data source of :data:`skillmoe_ray.registry.DATA_SOURCES` is called as.

    ``spec`` is the split's config, ``task`` its task name (the split's own or the benchmark's), ``where``
    its config key (``data.val``, ``data.test``: for messages, and the split's name), ``seed`` the run's.
    """

    def __call__(self, spec: SplitSpec, task: str, where: str, seed: int) -> list[Instance]: ...


def load_split(spec: SplitSpec, default_task: str, where: str, seed: int = 0) -> list[Instance]:
    """Every instance of one split as described by ``spec`` (before any sampling), from its registered source.

    Source ``lab`` generates the skill lab's questions from ``seed`` (``spec.size`` of them).
    """
    source: DataSource = DATA_SOURCES.load(spec.source, f"{where}.source")
    return source(spec, spec.task or default_task, where, seed)


def sample(instances: list[Instance], size: int | None, seed: int) -> list[Instance]:
    """A seeded sample of ``size`` instances, in their original order; all of them when size is None."""
    if size is None or size >= len(instances):
        return instances
    if size < 1:
        raise ConfigError(f"sample size must be >= 1, got {size}")
    keep = set(random.Random(seed).sample(range(len(instances)), size))
    return [inst for i, inst in enumerate(instances) if i in keep]


def sample_per_subject(instances: list[Instance], size: int, seed: int) -> list[Instance]:
    """A seeded sample of up to ``size`` instances from every subject (MMLU-Pro's 25 x 14 layout)."""
    by_subject: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_subject[inst.subject or ""].append(inst)
    keep = {inst.id for group in by_subject.values() for inst in sample(group, size, seed)}
    return [inst for inst in instances if inst.id in keep]


def take(instances: list[Instance], spec: SplitSpec, seed: int) -> list[Instance]:
    """Apply the split's sampling settings."""
    if spec.sample_per_subject is not None:
        instances = sample_per_subject(instances, spec.sample_per_subject, seed)
    return sample(instances, spec.sample, seed)


def load_data(cfg: DataConfig, seed: int) -> tuple[list[Instance], list[Instance]]:
    """Validation and test instances.

    Validation questions that also appear in the test split are removed before the validation
    sample is drawn, so both may come from one source split (MMLU-Pro, GPQA main vs diamond).
    """
    test = take(load_split(cfg.test, cfg.name, "data.test", seed), cfg.test, seed)
    # A question is its stem and its options: "Which of the following is true?" recurs with other options.
    test_questions = {(inst.question, inst.choices) for inst in test}
    val_all = load_split(cfg.val, cfg.name, "data.val", seed)
    val_pool = [inst for inst in val_all if (inst.question, inst.choices) not in test_questions]
    if len(val_pool) < len(val_all):
        log.info("left out %d validation questions that also appear in the test split",
                 len(val_all) - len(val_pool))
    val = take(val_pool, cfg.val, seed)
    if not val:
        raise DataError("the validation split is empty after removing questions shared with test")
    ids = [inst.id for inst in val + test]
    if len(set(ids)) != len(ids):
        raise DataError("validation and test instance ids overlap; give each row a unique 'id'")
    return val, test
