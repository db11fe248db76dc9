"""Deterministic seeds and content hashes.

Every generation gets its own seed derived from the run seed and what the generation is for
(stage, instance, slot, sample), so results do not depend on batch composition or order, and the
same (model, prompt, sample) is the same cache entry in every run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON form of ``obj`` (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed determined by ``parts`` (the run seed first, then what the draw is for)."""
    return int(stable_hash(list(parts), 8), 16) & 0x7FFFFFFF
