"""Generation backends behind one interface (see :mod:`skillmoe_ray.engines.base`).

The registry maps an engine name to "module:Class" so a backend's heavy imports (vllm, torch,
transformers) happen only when that backend is chosen, inside the process that runs it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from skillmoe_ray.config import EngineConfig, ModelSpec
from skillmoe_ray.engines.base import Engine, GenOutput, GenRequest, Sampling
from skillmoe_ray.registry import ENGINES, Entry
from skillmoe_ray.seeding import stable_hash

__all__ = [
    "Engine", "GenOutput", "GenRequest", "Sampling", "create_engine", "engine_class",
    "engine_entry", "model_fingerprint",
]


def engine_entry(name: str) -> Entry:
    """The registry entry of engine ``name``; a "module:Class" name is a user's own (local) engine."""
    return ENGINES.get(name)


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under ``name`` (or given directly as "module:Class")."""
    return ENGINES.load(name)


def create_engine(engine: EngineConfig, spec: ModelSpec) -> Engine:
    """An engine instance for one expert (not yet loaded)."""
    cls = engine_class(engine.name)
    return cls(spec, engine.options, engine.dtype, engine.kwargs_for(spec))


def _file_digest(path: Path) -> str:
    """Cheap content digest of a possibly huge weight file: its size and first/last 64 KiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 16))
        if size > 1 << 17:
            f.seek(-(1 << 16), os.SEEK_END)
            h.update(f.read(1 << 16))
    return h.hexdigest()[:16]


def model_fingerprint(spec: ModelSpec, engine: EngineConfig) -> str:
    """What identifies an expert's outputs: weights (content of a local dir, or hub id + revision) and engine.

    Rebuilding a local model with different weights changes the fingerprint, so cached outputs of
    the old weights are never served for the new ones.
    """
    if (
        spec.is_local and not engine_entry(engine.name).remote
    ):  # a served model's path is a name on its server
        root = Path(os.path.expanduser(spec.path))
        files = sorted(p for p in root.iterdir() if p.suffix in (".json", ".safetensors", ".bin", ".model"))
        weights = {p.name: _file_digest(p) for p in files}
        source = {"local": weights}
    else:
        source = {"hub": spec.path, "revision": spec.revision or "main"}
    dtype = spec.dtype or engine.dtype
    identity = [source, engine.name, dtype]
    kwargs = engine.kwargs_for(spec)
    if kwargs:  # only where given, so fingerprints (and caches) of runs without them are unchanged
        identity.append({"kwargs": kwargs})
    return f"{spec.name}-{stable_hash(identity, 12)}"
