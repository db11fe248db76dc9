"""Local question files: JSON arrays or JSON Lines.

The layout follows the original research code: each row has ``question`` and ``gold_answer``;
``choices`` (a list of option strings), ``id``, ``task``, ``subject`` and ``answer_type`` are
optional. Malformed rows raise a :class:`DataError` naming the file, the line and the field.
The data sources ``local`` (a user's file) and ``demo`` (the project's own question set, shipped in
the package) read such files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from skillmoe_ray.config import SplitSpec
from skillmoe_ray.data.instances import ANSWER_TYPES, LETTERS, Instance, infer_answer_type, invalid_text
from skillmoe_ray.errors import ConfigError, DataError

REQUIRED_FIELDS = ("question", "gold_answer")


def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) from a .json array or a .jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None
    if path.suffix == ".jsonl" or not text.lstrip().startswith("["):
        yield from _jsonl_rows(path, text)
    else:
        yield from _json_array_rows(path, text)


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        yield lineno, row


def _json_array_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """Walk a JSON array element by element so each row keeps its line number."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        pos = _skip(text, pos, " \t\r\n,")
        if pos >= len(text):
            raise DataError(f"{path}: unterminated JSON array")
        if text[pos] == "]":
            return
        lineno = text.count("\n", 0, pos) + 1
        try:
            row, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        yield lineno, row


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def gold_to_str(value: object, where: str) -> str:
    """Gold answers are kept as strings: numbers become their decimal text ("204", not int 204)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise DataError(f"{where}: gold_answer must be a string or a number, got {value!r}")
    text = str(value).strip()
    if not text:
        raise DataError(f"{where}: gold_answer is empty")
    return text


def row_to_instance(row: dict, where: str, task: str, default_id: str, answer_type: str = "auto") -> Instance:
    """Validate one row and build its Instance; ``where`` is "file:line" for errors."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    bad = next(filter(None, (invalid_text(value, str(key)) for key, value in row.items())), None)
    if bad:
        raise DataError(f"{where}: field {bad}; fix or remove it")
    for name in REQUIRED_FIELDS:
        if name not in row:
            raise DataError(f"{where}: missing field {name!r} (required: {', '.join(REQUIRED_FIELDS)})")
    question = row["question"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field 'question' must be a non-empty string")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise DataError(f"{where}: field 'choices' must be a list of 2 to {len(LETTERS)} strings")
        choices = tuple(str(c) for c in choices)
    gold = gold_to_str(row["gold_answer"], where)
    kind = row.get("answer_type") or (None if answer_type == "auto" else answer_type)
    kind = kind or infer_answer_type(gold, choices is not None)
    if kind not in ANSWER_TYPES:
        raise DataError(f"{where}: answer_type must be one of {', '.join(ANSWER_TYPES)}, got {kind!r}")
    if choices and (len(gold) != 1 or gold not in LETTERS[: len(choices)]):
        raise DataError(
            f"{where}: gold_answer {gold!r} is not one of the letters of its {len(choices)} choices"
        )
    row_task = str(row.get("task") or task)
    return Instance(
        id=str(row["id"]) if row.get("id") not in (None, "") else default_id,
        task=row_task,
        question=question.strip(),
        gold=gold,
        answer_type=kind,
        choices=choices,
        subject=row.get("subject"),
    )


def load_local(path: str | Path, task: str, answer_type: str = "auto", id_prefix: str = "") -> list[Instance]:
    """Load every row of a local file as Instances, failing on the first malformed row.

    Rows without an ``id`` get ``{id_prefix}{index}``.
    """
    instances = [
        row_to_instance(row, f"{path}:{lineno}", task, f"{id_prefix or task + '-'}{index}", answer_type)
        for index, (lineno, row) in enumerate(read_rows(path))
    ]
    ids = [inst.id for inst in instances]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: duplicate instance id {dup!r}")
    if not instances:
        raise DataError(f"{path}: no rows")
    return instances


def demo_data_path(name: str) -> Path:
    """Path of a file of the project's own demo question set (shipped in the package)."""
    return Path(str(resources.files("skillmoe_ray.data") / "demo" / name))


def local_source(spec: SplitSpec, task: str, where: str, seed: int) -> list[Instance]:
    """The data source ``local``: the file at ``spec.path``."""
    return _split_file(Path(_required_path(spec, where)).expanduser(), spec, task, where)


def demo_source(spec: SplitSpec, task: str, where: str, seed: int) -> list[Instance]:
    """The data source ``demo``: the demo set's file named ``spec.path``."""
    return _split_file(demo_data_path(_required_path(spec, where)), spec, task, where)


def _required_path(spec: SplitSpec, where: str) -> str:
    if not spec.path:
        raise ConfigError(f"{where}.path is required for source {spec.source!r}")
    return spec.path


def _split_file(path: Path, spec: SplitSpec, task: str, where: str) -> list[Instance]:
    """One split's file; rows without an id are numbered within the task and split."""
    split_name = where.rsplit(".", 1)[-1]
    return load_local(path, task, spec.answer_type, id_prefix=f"{task}-{split_name}-")
