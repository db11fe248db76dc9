"""The run directory's human-readable artifacts (the stage cache holds the same data by hash)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from skillmoe_ray.cache import write_json, write_jsonl
from skillmoe_ray.method.skills import question_text
from skillmoe_ray.reporting.compare import write_comparison
from skillmoe_ray.reporting.evaluate import ExpertAnswer
from skillmoe_ray.reporting.run_result import RunResult


def final_answer_rows(run: RunResult) -> list[dict]:
    """Per test instance: the question as the models saw it (with its options), gold, every method's answer
    and correctness, and Symbolic-MoE's final text: a file readable on its own, as lm-eval's samples are."""
    runner, runs = run.runner, run.runs
    correct = {name: runner.correct(plan_run) for name, plan_run in runs.items()}
    sym = runs["symbolic_moe"]
    rows = []
    for iid, inst in runner.by_id.items():
        key = sym.final_keys.get(iid)
        rows.append({
            "id": iid,
            "task": inst.task,
            "question": question_text(inst),
            "gold": inst.gold,
            "answers": {name: plan_run.answers.get(iid) for name, plan_run in runs.items()},
            "correct": {name: flags.get(iid) for name, flags in correct.items()},
            "key": key,
            "text": runner.records[key].text if key else None,
        })
    return rows


def write_run(run_dir: Path, run: RunResult, expert_rows: Sequence[ExpertAnswer], results: dict) -> None:
    """Write skills, profiles, aggregator choice, recruitment, expert outputs, final answers, results.

    ``expert_rows`` and ``results`` are what :func:`skillmoe_ray.reporting.evaluate.evaluate` made of ``run``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    skills, mapping, profiles = run.routing.skills, run.routing.mapping, run.routing.profiles
    mapped = mapping.mapped
    write_jsonl(
        run_dir / "skills.jsonl",
        [
            {"id": iid, "samples": skills.samples[iid], "skills": kept, "mapped_skills": mapped.get(iid)}
            for iid, kept in skills.skills.items()
        ],
    )
    write_json(run_dir / "vocabulary.json", {"vocabulary": mapping.vocabulary, "mapping": mapping.mapping})
    write_json(run_dir / "profiles.json", profiles.profiles)
    write_json(
        run_dir / "competence.json",
        {m: {"competence": c, "probability": profiles.distribution[m]} for m,
         c in profiles.competence.items()},
    )
    write_json(run_dir / "aggregator.json", run.routing.selection.to_json())
    write_jsonl(run_dir / "recruitment.jsonl", [r.to_dict() for r in run.recruitments])
    records = run.runner.records
    write_jsonl(run_dir / "expert_outputs.jsonl", [r.to_json(records[r.key].text) for r in expert_rows])
    write_jsonl(run_dir / "final_answers.jsonl", final_answer_rows(run))
    if results.get("mode") == "compare":
        write_comparison(run_dir, results)
    write_json(run_dir / "results.json", results)
