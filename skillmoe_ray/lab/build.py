"""Building the skill lab's models: the shared tokenizer, then each model trained from its recipe.

A model is trained only when no copy built from the same recipe exists: the recipe (role, skills,
architecture, seed, optimization settings, and :data:`LAB_VERSION`) is hashed, and the hash is written
next to the weights. The project ships the default pool's trained weights (``skillmoe_ray/lab/models``,
1.5 MB): a model whose shipped copy has the wanted hash is copied instead of trained, so ``make demo``
trains nothing unless a recipe changes. ``python -m skillmoe_ray.lab.build`` retrains them all.

Trainings run in worker processes, one CPU thread each, ``workers`` side by side, with one
progress bar (or periodic log lines when output is not a terminal) over all their steps.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from skillmoe_ray.errors import ConfigError
from skillmoe_ray.lab.train import TrainSettings
from skillmoe_ray.lab.world import check_skills, world_skills
from skillmoe_ray.seeding import stable_hash

log = logging.getLogger(__name__)

LAB_VERSION = 1  # bump when the world, the examples or the training loop change: every model retrains
MARKER = "lab_recipe.json"  # beside the weights: the recipe, its hash, the final loss
ROLES = ("expert", "keyword", "aggregator")
ARCHITECTURES = ("llama", "qwen3", "mistral")
# The shape of every lab model: ~96k parameters, head dimension 32 (vLLM's CPU kernels need >= 32).
SHAPE = {"hidden_size": 64, "layers": 2, "head_dim": 32, "num_attention_heads": 2, "num_key_value_heads": 1,
         "intermediate_size": 128, "initializer_range": 0.02, "tie_word_embeddings": True,
         "max_position_embeddings": 512}
EXAMPLES = 8000  # distinct training examples per model (batches are drawn from them)
TOKENIZER_DIR = "_tokenizer"
PROGRESS_EVERY = 25  # steps between a worker's progress reports


@dataclass(frozen=True)
class ExtraKey:
    """A recipe key beyond the common ones: the one role that takes it, how an error names it, and whether a
    share of 0 means the same as no key (no label noise does; a choice share of 0, no multiple choice, does
    not: unset keeps the natural mix)."""

    role: str
    words: str
    zero_is_unset: bool


# Recipe keys beyond the common ones, each a share in [0, 1) hashed only when set: the keyword model's
# label noise, the aggregator's share of multiple-choice examples.
_EXTRA_KEYS = {"label_noise": ExtraKey("keyword", "label noise", zero_is_unset=True),
               "choice_share": ExtraKey("aggregator", "a choice share", zero_is_unset=False)}


def shipped_dir() -> Path:
    """Where the package keeps the default pool's trained models."""
    return Path(str(resources.files("skillmoe_ray.lab") / "models"))


def full_recipe(name: str, recipe: dict, world: str = "standard") -> dict:
    """The recipe with every default filled in and checked: what the model's hash is taken over.

    A model of another world than the standard one records it (``world``), as a keyword model trained with
    label noise records its rate (``label_noise``) and an aggregator its share of multiple-choice examples
    (``choice_share``); the standard world's recipes (and hashes) have none of them. ``shape`` changes
    entries of :data:`SHAPE`; unset, the recipe's shape is :data:`SHAPE` and its hash what it was.
    """
    where = f"lab.models.{name}"
    skills_of_world = world_skills(world)
    role = recipe.get("role", "expert")
    if role not in ROLES:
        raise ConfigError(f"{where}.role: unknown role {role!r}; valid: {', '.join(ROLES)}")
    arch = recipe.get("arch", "llama")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"{where}.arch: unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    skills = list(recipe.get("skills") or (skills_of_world if role != "expert" else []))
    if role == "expert" and not skills:
        raise ConfigError(f"{where}.skills: an expert needs at least one skill; skills: "
                          f"{', '.join(skills_of_world)}")
    check_skills(skills, f"{where}.skills", world)
    valid = ["role", "arch", "skills", "seed", "shape", *_EXTRA_KEYS, *asdict(TrainSettings())]
    unknown = set(recipe) - set(valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; valid: {', '.join(valid)}")
    settings = TrainSettings(**{k: recipe[k] for k in asdict(TrainSettings()) if k in recipe})
    out = {"role": role, "arch": arch, "skills": skills, "train": asdict(settings),
           "shape": _shape(recipe.get("shape"), where),
           "examples": EXAMPLES, "version": LAB_VERSION}
    if world != "standard":
        out["world"] = world
    for key in _EXTRA_KEYS:
        out |= _extra_share(recipe, role, where, key)
    return out


def _extra_share(recipe: dict, role: str, where: str, key: str) -> dict:
    """``{key: share}`` of a recipe that sets one of the role's :data:`_EXTRA_KEYS` (a share in [0, 1));
    else nothing, so recipes without it keep their hashes (and their shipped copies)."""
    share, extra = recipe.get(key), _EXTRA_KEYS[key]
    if share is None or (extra.zero_is_unset and not share):
        return {}
    if role != extra.role:
        raise ConfigError(f"{where}.{key}: only {_a(extra.role)} model takes {extra.words}, "
                          f"this is {_a(role)}")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise ConfigError(f"{where}.{key} must be a share in [0, 1), got {share!r}")
    return {key: float(share)}


def _shape(changes: dict | None, where: str) -> dict:
    """:data:`SHAPE` with the recipe's ``shape`` entries put in (a wider or deeper model); a recipe without
    them has exactly :data:`SHAPE`, so its hash is what it was."""
    changes = dict(changes or {})
    unknown = set(changes) - set(SHAPE)
    if unknown:
        raise ConfigError(f"{where}.shape: unknown key {sorted(unknown)[0]!r}; valid: {', '.join(SHAPE)}")
    return SHAPE | changes


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def recipe_hash(recipe: dict) -> str:
    return stable_hash(recipe)


def is_built(model_dir: Path, digest: str) -> bool:
    """Whether ``model_dir`` holds a model trained from the recipe with hash ``digest``."""
    marker = model_dir / MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("hash") == digest


def tokenizer_corpus(world: str = "standard") -> list[str]:
    """Every text the prompts and answers of ``world`` contain, rendered as the chat template will see it."""
    from skillmoe_ray.lab import examples as ex

    rng = random.Random(0)
    corpus = []
    pool = (
        ex.keyword_examples(2000, rng, world)
        + ex.aggregator_examples(2000, rng, world)
        + ex.expert_examples(list(world_skills(world)), 2000, rng, world)
    )
    for messages, response in pool:
        for m in messages:
            corpus += [m["content"], " " + m["content"]]  # the template puts a space before each turn
        corpus.append(response)
    return corpus


def training_examples(recipe: dict, seed: int):
    """The (messages, response) examples of a recipe's role."""
    from skillmoe_ray.lab import examples as ex

    rng, world = random.Random(seed), recipe.get("world", "standard")
    if recipe["role"] == "keyword":
        return ex.keyword_examples(EXAMPLES, rng, world, recipe.get("label_noise", 0.0))
    if recipe["role"] == "aggregator":
        return ex.aggregator_examples(EXAMPLES, rng, world, recipe.get("choice_share"))
    return ex.expert_examples(recipe["skills"], EXAMPLES, rng, world)


def train_one(name: str, recipe: dict, out_dir: str, tokenizer_dir: str, progress=None) -> dict:
    """Train one model (in a worker process, one thread) and save it; returns what it reached."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from skillmoe_ray.demo import model_config
    from skillmoe_ray.lab.train import encode_examples, train

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    settings = TrainSettings(**recipe["train"])
    data = encode_examples(tokenizer, training_examples(recipe, settings.seed))
    torch.manual_seed(settings.seed)
    model = AutoModelForCausalLM.from_config(model_config(recipe["arch"], len(tokenizer), recipe["shape"]))

    def on_step(step: int, loss: float) -> None:
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress.put((name, PROGRESS_EVERY, loss))

    start = time.perf_counter()
    loss = train(model, data, tokenizer.pad_token_id, settings, on_step)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    report = {
        "hash": recipe_hash(recipe),
        "recipe": recipe,
        "final_loss": round(loss, 4),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    (tmp / MARKER).write_text(json.dumps(report, indent=1, sort_keys=True))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # whole or not at all: a killed training leaves no half model behind
    return report


def tokenizer_dir(world: str = "standard") -> str:
    """The folder (under the models' root) of the tokenizer the models of ``world`` share."""
    return TOKENIZER_DIR if world == "standard" else f"{TOKENIZER_DIR}-{world}"


def ensure_tokenizer(root: Path, world: str = "standard"):
    """The tokenizer of ``world`` under ``root`` (built once; it depends only on the lab's code)."""
    from transformers import AutoTokenizer

    from skillmoe_ray.lab.tokenizer import build_tokenizer

    path = root / tokenizer_dir(world)
    digest = stable_hash(["tokenizer", LAB_VERSION] + ([] if world == "standard" else [world]))
    if not is_built(path, digest):
        shutil.rmtree(path, ignore_errors=True)
        build_tokenizer(tokenizer_corpus(world), path)
        (path / MARKER).write_text(json.dumps({"hash": digest}))
    return AutoTokenizer.from_pretrained(path)


def _train_all(jobs: Sequence[tuple[str, dict, Path]], root: Path, workers: int,
               world: str = "standard") -> dict[str, dict]:
    """Train ``jobs`` (name, recipe, out dir) in ``workers`` processes, with one progress display."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from skillmoe_ray.progress import StepProgress

    ensure_tokenizer(root, world)
    # Longest first (aggregation prompts are about twice as long), so the last worker is not left alone with
    # it.
    jobs = sorted(
        jobs, key=lambda job: -job[1]["train"]["steps"] * (2 if job[1]["role"] == "aggregator" else 1)
    )
    total = sum(recipe["train"]["steps"] for _, recipe, _ in jobs)
    ctx = mp.get_context("spawn")  # no fork of a process that may hold Ray or torch threads
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = {
            pool.submit(train_one, name, recipe, str(out), str(root / tokenizer_dir(world)), queue): name
            for name, recipe, out in jobs
        }
        progress = StepProgress(total, f"training {len(jobs)} lab models")
        while not all(f.done() for f in futures):
            progress.drain(queue, timeout=0.5)
        progress.drain(queue, timeout=0)
        progress.close()
        return {name: future.result() for future, name in futures.items()}


def ensure_lab_models(
    models: dict, models_dir: str, workers: int = 2, use_shipped: bool = True, force: bool = False,
    world: str = "standard",
) -> dict[str, str]:
    """Make every lab model of ``models`` (name -> recipe) exist under ``models_dir``; returns how each came.

    Every model is of ``world`` (``lab.world``). A model already built from its recipe is kept; one whose
    shipped copy matches is copied; the rest (all of them with ``force``) are trained. The result maps
    each model to "kept", "shipped" or "trained".
    """
    root = Path(models_dir).expanduser()
    recipes = {name: full_recipe(name, dict(recipe or {}), world) for name, recipe in models.items()}
    how, jobs = {}, []
    for name, recipe in recipes.items():
        digest, out = recipe_hash(recipe), root / name
        if is_built(out, digest) and not force:
            how[name] = "kept"
        elif use_shipped and is_built(shipped_dir() / name, digest):
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(shipped_dir() / name, out)
            how[name] = "shipped"
        else:
            jobs.append((name, recipe, out))
    if jobs:
        root.mkdir(parents=True, exist_ok=True)
        log.info(
            "training %d lab models (%s), %d at a time", len(jobs), ", ".join(n for n, _, _ in jobs), workers
        )
        for name, report in _train_all(jobs, root, max(1, workers), world).items():
            log.info(
                "trained %s in %.0f s (final loss %.3f)", name, report["train_seconds"], report["final_loss"]
            )
            how[name] = "trained"
    return how
