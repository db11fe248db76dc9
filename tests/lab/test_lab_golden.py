"""The skill lab's answers and recruitment stay what they were: a small lab run against saved outputs.

Issue 21 (acceptance 4): refactoring the types that travel between the generation service, the method
and the reports must not change what a run decides. A small compare run of the skill lab (16 validation
and 16 test questions, every method of ``mode=compare``, the transformers engine in-process, fixed seed)
must write the same ``final_answers.jsonl`` and ``recruitment.jsonl`` as the saved copies in ``golden/``,
which the code before that refactoring produced.

Neither file holds a time-dependent field (no seconds, no dates): every field is compared except the
value of ``key`` in the final answers, a content hash that includes the engine's model fingerprint (the
engine layer's rule, which may change on its own); its presence is compared (whether an instance was
aggregated), and what the request produced is compared through ``text`` and ``answers``. The ``question``
field (issue 27: the question text, so that the file reads on its own) came after the saved copies and is
not compared: the copies were not regenerated, so they still hold what the code before that change decided.

To refresh the copies after an intended change of behaviour (retrained lab models, a new prompt), run
``python -m tests.lab.test_lab_golden`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from skillmoe_ray.cache import read_jsonl
from skillmoe_ray.config import load_config
from tests.conftest import compose_tree
from tests.lab.test_skill_lab_e2e import run_lab

pytestmark = [pytest.mark.engine]
GOLDEN = Path(__file__).parent / "golden"
FILES = ("final_answers.jsonl", "recruitment.jsonl")
OVERRIDES = ["+experiment=skill_lab", "engine=hf", "engine.options.batch_size=64", "lab.build_models=false",
             "data.val.size=16", "data.test.size=16", "mode=compare"]


def small_lab_run(tmp: Path, models_dir: Path) -> Path:
    """Run the small compare run in ``tmp``; its run directory."""
    tree = compose_tree([*OVERRIDES, f"lab.models_dir={models_dir}", f"cache_dir={tmp / 'cache'}"])
    run_lab(load_config(tree, str(tmp / "run")))
    return tmp / "run"


IGNORED = ("question",)  # final_answers.jsonl fields added after the saved copies were made


def comparable(name: str, rows: list[dict]) -> list[dict]:
    """``rows`` with the final answers' ``key`` reduced to whether there is one, the later fields left out."""
    if name != "final_answers.jsonl":
        return rows
    kept = [{k: v for k, v in row.items() if k not in IGNORED} for row in rows]
    return [{**row, "key": row["key"] is not None} for row in kept]


def test_a_small_lab_run_writes_the_saved_answers_and_recruitment(lab_models, tmp_path):
    run_dir = small_lab_run(tmp_path, lab_models)
    for name in FILES:
        got, want = read_jsonl(run_dir / name), read_jsonl(GOLDEN / name)
        assert [row.get("id", row.get("instance_id")) for row in got] == [
            row.get("id", row.get("instance_id")) for row in want]
        for row, saved in zip(comparable(name, got), comparable(name, want)):
            assert row == saved, f"{name}: {json.dumps(row)[:300]} != {json.dumps(saved)[:300]}"


if __name__ == "__main__":  # refresh the saved copies: python -m tests.lab.test_lab_golden
    import tempfile

    from skillmoe_ray.lab.build import ensure_lab_models

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        ensure_lab_models(compose_tree(["+experiment=skill_lab"])["lab"]["models"], str(models))
        out = small_lab_run(Path(tmp), models)
        for name in FILES:
            (GOLDEN / name).write_text((out / name).read_text())
        print(f"wrote {', '.join(FILES)} to {GOLDEN}", file=sys.stderr)
