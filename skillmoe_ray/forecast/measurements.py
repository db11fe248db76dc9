"""Measured per-model figures (activation seconds, generation throughput) kept across runs.

Costs and plans should rest on what the hardware really did, not on guesses. After every run the
pipeline records, per model fingerprint, how long its activations took and how many tokens per
second it generated; later runs (and cost estimates of cached runs, which activate nothing) read
them back. The file is ``<cache_dir>/measurements.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from skillmoe_ray.cache import set_aside, write_json


class Measurements:
    """Per-fingerprint activation seconds (by kind: load, wake) and tokens per second."""

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / "measurements.json"
        self.data: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        """The stored figures; a damaged file is set aside (figures are measured again), never fatal."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            set_aside(self.path, f"not valid JSON: {exc}")
            return {}
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            set_aside(self.path, "not a mapping of model fingerprint -> figures")
            return {}
        return data

    def record_timeline(self, timeline: Sequence[dict], fingerprints: Mapping[str, str]) -> None:
        """Fold this run's activations and generation speeds into the stored figures and save them."""
        activations: dict[tuple[str, str], list[float]] = defaultdict(list)
        speeds: dict[str, list[float]] = defaultdict(list)
        for entry in timeline:
            fp = fingerprints[entry["expert"]]
            if entry["kind"] != "resident":
                activations[(fp, entry["kind"])].append(entry["activation_seconds"])
            busy = entry["end"] - entry["start"] - entry["activation_seconds"]
            if entry.get("output_tokens") and busy > 0:
                speeds[fp].append(entry["output_tokens"] / busy)
        for (fp, kind), times in activations.items():
            self.data.setdefault(fp, {})[f"{kind}_seconds"] = round(sum(times) / len(times), 4)
        for fp, values in speeds.items():
            self.data.setdefault(fp, {})["tokens_per_second"] = round(sum(values) / len(values), 2)
        if activations or speeds:
            write_json(self.path, self.data)

    def activation_seconds(self, fingerprint: str) -> float | None:
        """Seconds one activation of the model took when last measured (a load), or None."""
        entry = self.data.get(fingerprint, {})
        return entry.get("load_seconds", entry.get("wake_seconds"))
