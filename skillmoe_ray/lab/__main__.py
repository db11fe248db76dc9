"""``python -m skillmoe_ray.lab``: train the skill lab's models and show what each learned.

    python -m skillmoe_ray.lab                       # build what is missing under lab.models_dir, then check
    python -m skillmoe_ray.lab --out skillmoe_ray/lab/models --retrain   # reproduce the shipped weights

Recipes come from the composed config (``+experiment=skill_lab`` unless overrides say otherwise).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m skillmoe_ray.lab", description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="where to build the models (default: lab.models_dir of the config)")
    parser.add_argument("--retrain", action="store_true", help="train every model, even where a copy exists")
    parser.add_argument("--workers", type=int, help="trainings side by side (default: lab.workers)")
    parser.add_argument("--check", type=int, default=240, metavar="N",
                        help="test questions to check each model on (0: no check; default 240)")
    parser.add_argument("--samples", type=int, default=0, metavar="S",
                        help="also sample the keyword model S times per question at skills.temperature and "
                             "show how often one sample names the gold skill (default 0: not shown)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (default: +experiment=skill_lab)")
    return parser.parse_args(argv)


def compose(overrides: list[str]) -> dict:
    """The resolved config of ``overrides`` (the skill lab's experiment by default)."""
    from skillmoe_ray.config.compose import compose_tree

    return compose_tree(overrides or ["+experiment=skill_lab"])


def print_checks(root: Path, models: dict, n: int, seed: int = 0, world: str = "standard",
                 samples: int = 0, temperature: float = 0.7) -> None:
    """Per-skill accuracy of every model of ``world`` on ``n`` test questions, one table; with ``samples``,
    a keyword model's row of single samples at ``temperature`` too."""
    from skillmoe_ray.lab.build import full_recipe
    from skillmoe_ray.lab.check import CHECKS, keyword_sample_accuracy
    from skillmoe_ray.lab.world import generate_split, world_skills

    test = generate_split("test", n, seed, world)
    skills = list(world_skills(world))
    print(f"{'model':16} {'role':10} " + " ".join(f"{s[:9]:>9}" for s in skills))
    for name, recipe in models.items():
        role = full_recipe(name, dict(recipe or {}), world)["role"]
        acc = CHECKS[role](root / name, test)
        own = set(recipe.get("skills") or ())
        cells = [f"{acc.get(s, 0.0):>8.2f}{'*' if s in own else ' '}" for s in skills]
        print(f"{name:16} {role:10} " + " ".join(cells))
        if role == "keyword" and samples:
            acc = keyword_sample_accuracy(root / name, test, samples, temperature, seed)
            print(f"{'':16} {f'T={temperature}':10} " + " ".join(f"{acc.get(s, 0.0):>8.2f} " for s in skills))
    print(
        "* = the expert's own skills (trained on); keyword: names the gold skill; "
        "aggregator: states the majority"
    )
    if samples:
        print(f"T={temperature}: share of single keyword samples ({samples} per question) naming the gold "
              "skill")


def main(argv: list[str] | None = None) -> int:
    from skillmoe_ray.errors import SkillMoEError
    from skillmoe_ray.lab.build import ensure_lab_models

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        tree = compose(args.overrides)
        lab = tree.get("lab") or {}
        if not lab.get("models"):
            raise SkillMoEError("lab.models is empty: compose +experiment=skill_lab (or give recipes)")
        out = Path(args.out or lab["models_dir"])
        how = ensure_lab_models(
            lab["models"],
            str(out),
            args.workers or lab.get("workers", 2),
            use_shipped=not args.retrain,
            force=args.retrain,
            world=lab.get("world", "standard"),
        )
        print(", ".join(f"{name}: {state}" for name, state in how.items()))
        if args.check:
            print_checks(out, lab["models"], args.check, world=lab.get("world", "standard"),
                         samples=args.samples, temperature=tree["skills"]["temperature"])
    except SkillMoEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
