"""The run directory's human-readable artifacts (the stage cache holds the same data by hash)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from skillmoe_ray.cache import write_json, write_jsonl
from skillmoe_ray.recruit import Recruitment


def write_run(
    run_dir: Path,
    skills: dict,
    profiles: dict,
    mapping: dict,
    recruitments: Sequence[Recruitment],
    selection: dict,
    inference: dict,
    final: dict,
    majority: Mapping[str, str | None],
    results: dict,
    texts: Mapping[str, str],
) -> None:
    """Write skills, profiles, aggregator choice, recruitment, expert outputs, final answers, results.

    ``texts`` maps generation keys to generated text, for the expert outputs and final answers.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    mapped = mapping["mapped"]
    write_jsonl(
        run_dir / "skills.jsonl",
        [
            {"id": iid, "samples": skills["samples"][iid], "skills": kept, "mapped_skills": mapped.get(iid)}
            for iid, kept in skills["skills"].items()
        ],
    )
    write_json(run_dir / "vocabulary.json", {"vocabulary": mapping["vocabulary"], "mapping": mapping["mapping"]})
    write_json(run_dir / "profiles.json", profiles["profiles"])
    write_json(
        run_dir / "competence.json",
        {m: {"competence": c, "probability": profiles["distribution"][m]} for m, c in profiles["competence"].items()},
    )
    write_json(run_dir / "aggregator.json", selection)
    write_jsonl(run_dir / "recruitment.jsonl", [r.to_dict() for r in recruitments])
    write_jsonl(run_dir / "expert_outputs.jsonl", [{**r, "text": texts.get(r["key"])} for r in inference["outputs"]])
    write_jsonl(
        run_dir / "final_answers.jsonl",
        [{**r, "majority_vote": majority.get(r["id"]), "text": texts.get(r["key"])} for r in final["outputs"]],
    )
    write_json(run_dir / "results.json", results)
