"""Read back what an offline W&B run recorded, for tests.

wandb 0.31 writes an offline run only as its transaction log, ``run-<id>.wandb`` (files/ holds
media and requirements.txt but no config.yaml or wandb-summary.json until the run is synced). The
log uses the LevelDB log format: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
records, each a 7-byte header (CRC32, little-endian length, type: full, first, middle, last) and a
chunk of a serialized ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = 7
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """An offline run's config, final summary, logged history rows, artifacts (name, type, files), its
    exit code (None while the run was never finished: the process died before it could), its display
    name and its defined metrics (name or glob, step metric, whether kept out of the summary)."""

    path: Path
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    artifacts: list[dict] = field(default_factory=list)
    exit_code: int | None = None
    name: str = ""
    metrics: list[dict] = field(default_factory=list)


def _payloads(data: bytes) -> list[bytes]:
    """The records' payloads, chunks reassembled, in order."""
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, pending, out = HEADER, b"", []
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # the block's tail is padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            out.append(pending)
    return out


def _apply(target: dict, items) -> None:
    for item in items:
        keys = list(item.nested_key) or [item.key]
        node = target
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)


def read_offline_run(run_path: Path) -> OfflineRun:
    """Replay ``run_path``'s transaction log (``<dir>/wandb/offline-run-*``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log_file,) = Path(run_path).glob("run-*.wandb")
    run = OfflineRun(Path(run_path))
    for payload in _payloads(log_file.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "config":
            _apply(run.config, record.config.update)
        elif kind == "run":
            _apply(run.config, record.run.config.update)
            run.name = record.run.display_name or run.name
        elif kind == "metric":
            m = record.metric
            run.metrics.append({"name": m.name or m.glob_name, "step_metric": m.step_metric,
                                "summary_none": m.summary.none})
        elif kind == "summary":
            _apply(run.summary, record.summary.update)
        elif kind == "history":
            row: dict = {}
            _apply(row, record.history.item)
            run.history.append(row)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "artifact":
            run.artifacts.append({"name": record.artifact.name, "type": record.artifact.type,
                                  "files": [e.path for e in record.artifact.manifest.contents]})
    return run


def offline_runs(directory: Path) -> list[Path]:
    """The offline run directories W&B left under ``directory``."""
    return sorted((Path(directory) / "wandb").glob("offline-run-*"))
