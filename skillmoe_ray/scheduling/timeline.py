"""What the executor records: one timeline entry per group run, and the run's summary.

Typed, so the pipeline, the reports and the benchmarks read fields by name; each record's ``to_json()`` is
the dict results.json and the measurements files have always held (same keys, same order), so files written
before and after read alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FailedAttempt:
    """One attempt at a group that failed before the one that succeeded: when, and the error (300 chars)."""

    start: float
    end: float
    error: str

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "error": self.error}


@dataclass(frozen=True)
class TimelineEntry:
    """One group's run on a slot: which expert (``replica`` > 0 for a copy expert#i), the stage, when it
    started and ended (seconds since the run started), how the expert became active and the seconds that
    took (``phases``: load, wake, probe, ...), and the work done (requests, chunks, tokens). ``retries``:
    the attempts that failed before this one."""

    expert: str
    stage: str
    slot: int
    start: float
    end: float
    kind: str
    activation_seconds: float
    phases: dict[str, float]
    requests: int
    chunks: int
    prompt_tokens: int
    output_tokens: int
    replica: int = 0
    retries: tuple[FailedAttempt, ...] = ()

    def to_json(self) -> dict:
        """The entry as results.json holds it (``replica`` and ``retries`` only where there are any)."""
        return {
            "expert": self.expert, "stage": self.stage, "slot": self.slot,
            "start": self.start, "end": self.end, "kind": self.kind,
            "activation_seconds": self.activation_seconds, "phases": dict(self.phases),
            "requests": self.requests, "chunks": self.chunks,
            "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
            **({"replica": self.replica} if self.replica else {}),
            **({"retries": [r.to_json() for r in self.retries]} if self.retries else {}),
        }


@dataclass(frozen=True)
class ExecutorSummary:
    """Activation counts (total and per stage), deactivations by kind (sleep | unload), generate calls, loads
    started ahead and the timeline; ``placements``, where the Ray layer adds them: each expert actor's slot,
    bundle and node."""

    activations: dict[str, int]
    activations_per_stage: dict[str, dict[str, int]]
    deactivations: dict[str, int]
    generate_calls: int
    timeline: tuple[TimelineEntry, ...] = ()
    placements: tuple[dict, ...] | None = field(default=None)
    loads_ahead: int = 0  # loads started while another expert of the slot generated (load-ahead)

    def to_json(self) -> dict:
        """The summary as results.json holds it."""
        return {
            "activations": dict(self.activations),
            "activations_per_stage": {s: dict(c) for s, c in self.activations_per_stage.items()},
            "deactivations": dict(self.deactivations),
            "generate_calls": self.generate_calls,
            "timeline": [t.to_json() for t in self.timeline],
            **({"placements": list(self.placements)} if self.placements is not None else {}),
            **({"loads_ahead": self.loads_ahead} if self.loads_ahead else {}),
        }
