"""The serving benchmark's table: one row per configuration and concurrency, side by side.

Pure: :mod:`skillmoe_ray.bench.serve` measures the windows and reads ``/v1/stats``; this module turns what it
measured into rows and the aligned table it prints (and ``--json`` writes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from skillmoe_ray.bench.load import Window, percentile

CONFIGS = {"a": "default", "b": "single", "c": "all resident", "d": "half the pool", "e": "per_expert"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration at one concurrency: what its window measured."""

    config: str
    clients: int
    requests_per_s: float
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    ok: int
    errors: dict[str, int]
    activations: int  # loads and wakes during the window (``/v1/stats`` after minus before)
    resident: int  # models resident at the window's end
    first_request_s: float | None  # the configuration's first request after its ready line
    window_s: float
    loads_ahead: int = 0  # of those activations, loads started while another model generated (load-ahead)


def row_of(config: str, clients: int, window: Window, stats: tuple[dict, dict], first_s: float | None) -> Row:
    """The row of one window, ``stats`` the service's ``/v1/stats`` before and after it."""
    before, after = stats
    lat = window.latencies
    pct = {q: round(percentile(lat, q), 3) if lat else None for q in (50, 95, 99)}
    rate = round(len(lat) / window.wall_s, 3) if window.wall_s else 0.0
    return Row(config, clients, rate, pct[50], pct[95], pct[99], len(lat), dict(window.errors),
               after["activations"] - before["activations"], len(after["resident"]),
               None if first_s is None else round(first_s, 3), round(window.wall_s, 2),
               after.get("loads_ahead", 0) - before.get("loads_ahead", 0))


def ratios_to_c(rows: Sequence[Row]) -> list[float | None]:
    """Each row's requests/s over that of configuration (c) at the same concurrency (None without one)."""
    c = {r.clients: r.requests_per_s for r in rows if r.config == "c"}
    return [round(r.requests_per_s / c[r.clients], 2) if c.get(r.clients) else None for r in rows]


def spread(row: Row) -> float | None:
    """p95 / p50 of a row (None without latencies)."""
    return round(row.p95_s / row.p50_s, 2) if row.p50_s and row.p95_s is not None else None


COLUMNS = ("config", "clients", "req/s", "vs (c)", "p50 s", "p95 s", "p99 s", "p95/p50", "errors",
           "activations", "ahead", "resident", "first s")


def format_table(rows: Sequence[Row]) -> str:
    """The rows side by side, with each one's requests/s relative to (c) at the same concurrency."""
    def cell(value) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    lines = [[f"({r.config}) {CONFIGS[r.config]}", r.clients, r.requests_per_s, ratio, r.p50_s, r.p95_s,
              r.p99_s, spread(r), sum(r.errors.values()), r.activations, r.loads_ahead, r.resident,
              r.first_request_s]
             for r, ratio in zip(rows, ratios_to_c(rows))]
    table = [list(COLUMNS)] + [[cell(v) for v in line] for line in lines]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    aligned = [[v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))]
               for row in table]
    return "\n".join("  ".join(row) for row in aligned)
