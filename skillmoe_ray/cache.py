"""Content-addressed caches shared by all runs, and crash-safe file writes.

Two stores live under the configured ``cache_dir``:

- :class:`StageCache` keeps each stage's result under a hash of everything that determines it, so
  a rerun (or a sweep over k, which needs the same profiles) skips finished stages.
- :class:`GenerationStore` keeps every generated output (a :class:`~skillmoe_ray.records.Generation`,
  one JSON line) under its request key (model fingerprint, messages, sampling with seed). An expert
  group's outputs are written as one shard file as soon as the group finishes, so a run killed
  mid-stage loses at most the group in flight, and different methods or runs that need the same
  (model, prompt, sample) share it.

Every write goes to a temporary file first and is renamed into place, so a crash never leaves a
half-written entry behind; files get the permissions the user's umask gives (a cache shared by a
group's sweeps must be readable by the group). An entry that does not parse (a disk fault, a hand
edit) is logged with its path, moved aside as ``<name>.corrupt``, and treated as absent, so the
stage or generation it held is computed again instead of the run failing or reading it as empty.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from skillmoe_ray.records import Generation
from skillmoe_ray.seeding import stable_hash

log = logging.getLogger(__name__)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and a rename, with the umask's permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600 whatever the umask says
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Crash-safe, human-readable JSON."""
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Crash-safe JSON Lines."""
    return write_atomic(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """Every row of a JSON Lines file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def set_aside(path: Path, why: str) -> None:
    """Move a damaged cache file out of the way (``<name>.corrupt``), saying so once, with its path."""
    aside = path.with_name(path.name + ".corrupt")
    log.warning("cache entry %s is damaged (%s): moved aside to %s; what it held is computed again", path,
                why, aside)
    os.replace(path, aside)


def read_records(path: Path) -> tuple[list[Generation], int]:
    """The readable generations of a shard (one :class:`Generation` a line), and how many lines were not."""
    good, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                good.append(Generation.from_json(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError):
                bad += 1
    return good, bad


class StageCache:
    """Stage results keyed by a hash of their inputs: ``<root>/stages/<stage>/<key>.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "stages"

    @staticmethod
    def key(stage: str, inputs: Any) -> str:
        """The cache key of a stage result: a hash of the stage name and its determining inputs."""
        return stable_hash([stage, inputs], 24)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def get(self, stage: str, key: str) -> Any | None:
        """The stored result, or None when the stage has not run with these inputs."""
        path = self.path(stage, key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            set_aside(path, f"not valid JSON: {exc}")
            return None

    def put(self, stage: str, key: str, value: Any) -> Path:
        return write_json(self.path(stage, key), value)


class GenerationStore:
    """Generated outputs keyed per request: ``<root>/generations/<model fingerprint>/<shard>.jsonl``."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "generations"
        self._loaded: dict[str, dict[str, Generation]] = {}

    def _records(self, model_fp: str) -> dict[str, Generation]:
        if model_fp not in self._loaded:
            records: dict[str, Generation] = {}
            folder = self.root / model_fp
            if folder.is_dir():
                for shard in sorted(folder.glob("*.jsonl")):
                    good, bad = read_records(shard)
                    if bad:  # keep the good lines in a new shard; the bad ones are generated again
                        set_aside(shard, f"{bad} unreadable line(s)")
                        if good:
                            write_jsonl(shard, [g.to_json() for g in good])
                    records.update({g.key: g for g in good})
            self._loaded[model_fp] = records
        return self._loaded[model_fp]

    def lookup(self, model_fp: str, keys: list[str]) -> dict[str, Generation]:
        """The stored generations among ``keys`` (missing keys are simply absent)."""
        records = self._records(model_fp)
        return {k: records[k] for k in keys if k in records}

    def save(self, model_fp: str, records: list[Generation]) -> Path | None:
        """Store one expert group's generations as a new shard."""
        if not records:
            return None
        shard = stable_hash(sorted(g.key for g in records), 24)
        path = write_jsonl(self.root / model_fp / f"{shard}.jsonl", [g.to_json() for g in records])
        self._records(model_fp).update({g.key: g for g in records})
        return path
