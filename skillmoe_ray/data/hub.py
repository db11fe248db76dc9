"""Benchmark loaders from the Hugging Face Hub.

Each benchmark's rows are converted by a small adapter into the generic row layout of
:mod:`skillmoe_ray.data.local` (question, gold_answer, choices, id, subject), so that validation and
error messages are shared. ``datasets`` is imported only here, when a hub split is loaded.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from skillmoe_ray.config import SplitSpec
from skillmoe_ray.data.instances import LETTERS, Instance
from skillmoe_ray.data.local import row_to_instance
from skillmoe_ray.errors import ConfigError, DataError
from skillmoe_ray.seeding import derive_seed


def gpqa_row(row: dict, index: int) -> dict:
    """GPQA: one correct and three incorrect answers, shuffled by a per-question seed."""
    correct = row["Correct Answer"].strip()
    options = [correct] + [row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3)]
    rid = str(row.get("Record ID") or index)
    random.Random(derive_seed("gpqa-shuffle", rid)).shuffle(options)
    return {
        "id": f"gpqa-{rid}",
        "question": row["Question"].strip(),
        "choices": options,
        "gold_answer": LETTERS[options.index(correct)],
        "subject": row.get("Subdomain") or row.get("High-level domain"),
    }


def mmlu_pro_row(row: dict, index: int) -> dict:
    """MMLU-Pro: up to ten options, gold as a letter, category as subject."""
    return {
        "id": f"mmlu_pro-{row.get('question_id', index)}",
        "question": row["question"],
        "choices": [str(o) for o in row["options"]],
        "gold_answer": row["answer"],
        "subject": row.get("category"),
    }


def medmcqa_row(row: dict, index: int) -> dict:
    """MedMCQA: four options opa..opd and the index of the correct one in ``cop``."""
    return {
        "id": f"medmcqa-{row.get('id', index)}",
        "question": row["question"],
        "choices": [row["opa"], row["opb"], row["opc"], row["opd"]],
        "gold_answer": LETTERS[int(row["cop"])],
        "subject": row.get("subject_name"),
    }


def aime_row(row: dict, index: int) -> dict:
    """AIME: a problem and an integer answer (kept as a string)."""
    problem = row.get("problem") or row.get("Problem") or row.get("Question")
    answer = row.get("answer", row.get("Answer"))
    rid = row.get("id", row.get("ID", index))
    return {"id": f"aime-{rid}", "question": problem, "gold_answer": str(answer), "answer_type": "math"}


def generic_row(row: dict, index: int) -> dict:
    """Rows already in the project layout (question, gold_answer, optional choices)."""
    return dict(row)


ADAPTERS: dict[str, Callable[[dict, int], dict]] = {
    "generic": generic_row,
    "gpqa": gpqa_row,
    "mmlu_pro": mmlu_pro_row,
    "medmcqa": medmcqa_row,
    "aime": aime_row,
}


def matches(row: dict, where: dict) -> bool:
    """Whether a raw row passes the split's ``where`` filter: field -> [low, high] (inclusive) or value."""
    for name, rule in where.items():
        value = row.get(name)
        if isinstance(rule, (list, tuple)):
            low, high = rule
            if value is None or not low <= value <= high:
                return False
        elif value != rule:
            return False
    return True


def load_hub(
    dataset: str,
    config: str | None,
    split: str,
    fmt: str,
    task: str,
    answer_type: str,
    where: dict | None = None,
) -> list[Instance]:
    """Load a hub split, keep the rows that pass ``where``, and convert each with the ``fmt`` adapter."""
    if fmt not in ADAPTERS:
        raise DataError(f"unknown data format {fmt!r}; valid formats: {', '.join(sorted(ADAPTERS))}")
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a base dependency
        raise DataError("loading hub datasets needs the 'datasets' package") from exc
    try:
        rows = datasets.load_dataset(dataset, config, split=split)
    except Exception as exc:
        raise DataError(
            f"could not load hub dataset {dataset!r} (config {config!r}, split {split!r}): {exc}"
        ) from exc
    adapter = ADAPTERS[fmt]
    out = []
    for index, row in enumerate(rows):
        if where and not matches(row, where):
            continue
        place = f"{dataset}[{split}] row {index}"
        try:
            converted = adapter(row, index)
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise DataError(f"{place}: cannot read as {fmt!r} ({type(exc).__name__}: {exc})") from None
        out.append(row_to_instance(converted, place, task, f"{task}-{split}-{index}", answer_type))
    return out


def hub_source(spec: SplitSpec, task: str, where: str, seed: int) -> list[Instance]:
    """The data source ``hub``: split ``spec.split`` of hub dataset ``spec.dataset``."""
    if not spec.dataset or not spec.split:
        raise ConfigError(f"{where}: source 'hub' needs dataset and split")
    return load_hub(spec.dataset, spec.config, spec.split, spec.format, task, spec.answer_type, spec.where)
