"""The report's four plots, drawn with matplotlib's object API on the Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so drawing needs no display,
changes no global backend and keeps no figure alive after it is saved. matplotlib is imported here
only; :mod:`skillmoe_ray.reporting.report` imports this module lazily and writes a table-only report without
it.
The data each plot shows is prepared by the caller; this module only draws, and returns the figure
so that tests can check its labels before :func:`save` writes it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

TITLE_SIZE = 13
LABEL_SIZE = 11
TICK_SIZE = 10
LABEL_CHARS = 32  # longer tick labels are cut, so the axes keep most of the figure
GEN_LABELS_UP_TO = 40  # timeline bars labelled with their generation seconds (more would overlap)


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the middle replaced by an ellipsis, for tick labels.

    The middle goes rather than the end because names of one family share their beginning
    (``deepseek-r1-distill-qwen-7b`` and ``deepseek-r1-distill-llama-8b``) and differ at the end.
    """
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head):]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _title(fig: Figure, title: str) -> None:
    """The figure's title over the whole figure, wrapped to its width so that it is never cut off."""
    chars_per_line = int(fig.get_figwidth() * 9)  # about 9 characters of a 13-point title per inch
    fig.suptitle("\n".join(textwrap.wrap(title, chars_per_line)), fontsize=TITLE_SIZE)


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG with a white background (readable in dark-themed viewers too)."""
    fig.savefig(path, facecolor="white")
    return path


def horizontal_bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str, ylabel: str,
                    intervals: Sequence[Sequence[float]] | None = None) -> Figure:
    """One horizontal bar per label (first label on top) on an axis that ends at 1.0, the value written
    inside each bar at its base; ``intervals`` (95% Wilson intervals, ``[lo, hi]`` per bar) draw
    asymmetric error bars and are written beside the values."""
    fig = _figure(8.0, max(2.6, 0.42 * len(labels) + 1.4))
    ax = fig.subplots()
    positions = list(range(len(labels)))
    xerr = None
    if intervals:
        xerr = [[max(v - lo, 0.0) for v, (lo, _) in zip(values, intervals)],
                [max(hi - v, 0.0) for v, (_, hi) in zip(values, intervals)]]
    ax.barh(positions, list(values), color="#4C72B0", height=0.65, xerr=xerr, capsize=3,
            error_kw={"ecolor": "#333333", "lw": 1})
    for y, value, ci in zip(positions, values, intervals or [None] * len(values)):
        text = f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        color = "white" if value > 0.45 else "black"
        ax.text(0.01, y, text, va="center", ha="left", fontsize=TICK_SIZE, color=color)
    ax.set_yticks(positions, [shorten(label) for label in labels], fontsize=TICK_SIZE)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.tick_params(axis="x", labelsize=TICK_SIZE)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    _title(fig, title)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    return fig


def heatmap(rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]],
            title: str, xlabel: str, ylabel: str, colorbar_label: str,
            marked: frozenset[tuple[str, str]] = frozenset()) -> Figure:
    """Counts as a colour grid, each cell annotated when the grid is small enough to read; the (row,
    column) cells in ``marked`` (an expert that is a specialist of the skill) are outlined."""
    fig = _figure(max(6.0, 0.75 * len(columns) + 3.5), max(3.2, 0.36 * len(rows) + 2.2))
    ax = fig.subplots()
    if not rows or not columns:  # nothing was recruited (e.g. every instance came from the cache)
        rows, counts = ["(none)"], [[0] * max(len(columns), 1)]
        columns = columns or ["(none)"]
    image = ax.imshow(counts, cmap="Blues", aspect="auto", vmin=0)
    ax.set_xticks(range(len(columns)), [shorten(c, 24) for c in columns], rotation=40, ha="right",
                  fontsize=TICK_SIZE)
    ax.set_yticks(range(len(rows)), [shorten(r) for r in rows], fontsize=TICK_SIZE)
    peak = max((v for row in counts for v in row), default=0)
    if len(rows) * len(columns) <= 600:
        for i, row in enumerate(counts):
            for j, value in enumerate(row):
                color = "white" if peak and value > 0.6 * peak else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=TICK_SIZE - 1, color=color)
    for i, row_name in enumerate(rows):
        for j, column in enumerate(columns):
            if (row_name, column) in marked:
                ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, edgecolor="#DD8452",
                                       lw=2.0))
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label(colorbar_label, fontsize=LABEL_SIZE)
    _title(fig, title)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    return fig


def gantt(timeline: Sequence[dict], title: str) -> Figure:
    """One row per expert, one bar per activation from start to end coloured by stage.

    The activation itself (loading or waking the model, ``activation_seconds`` at the start of the
    bar) is pale and hatched, the generation after it solid and its seconds written at the bar's end, so
    the time spent generating stands apart from the time spent switching even where a load dwarfs it.
    """
    experts = list(dict.fromkeys(t["expert"] for t in sorted(timeline, key=lambda t: t["start"])))
    stages = list(dict.fromkeys(t["stage"] for t in timeline))
    colors = {stage: f"C{i % 10}" for i, stage in enumerate(stages)}
    fig = _figure(10.0, max(3.0, 0.5 * len(experts) + 2.0))
    ax = fig.subplots()
    for t in timeline:
        row = experts.index(t["expert"])
        span = max(t["end"] - t["start"], 1e-3)
        load = min(t.get("activation_seconds") or 0.0, span)
        if load > 0:  # the load or wake: pale and hatched
            ax.broken_barh([(t["start"], load)], (row - 0.35, 0.7), facecolor=colors[t["stage"]], alpha=0.3,
                           edgecolor="black", hatch="///", linewidth=0.0)
        # the generation, solid, however short: on the CPU a load dwarfs it
        ax.broken_barh([(t["start"] + load, max(span - load, 1e-3))], (row - 0.35, 0.7),
                       color=colors[t["stage"]])
        if len(timeline) <= GEN_LABELS_UP_TO:
            ax.text(t["end"], row, f" {span - load:.1f}s", va="center", ha="left", fontsize=TICK_SIZE - 2)
    ax.set_yticks(range(len(experts)), [shorten(e, 24) for e in experts], fontsize=TICK_SIZE)
    ax.set_ylim(max(len(experts), 1) - 0.5, -0.5)  # first expert on top
    ax.tick_params(axis="x", labelsize=TICK_SIZE)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if timeline:
        handles = [Patch(color=colors[s], label=s) for s in stages]
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="load / wake (pale)"))
        handles.append(Patch(facecolor="grey", label="generation (solid; its seconds at the bar's end)"))
        ax.legend(handles=handles, title="stage", fontsize=TICK_SIZE - 1, title_fontsize=TICK_SIZE,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no expert was activated: every stage came from the cache",
                transform=ax.transAxes, ha="center", va="center", fontsize=LABEL_SIZE)
    _title(fig, title)
    ax.set_xlabel("seconds since the run started", fontsize=LABEL_SIZE)
    ax.set_ylabel("expert", fontsize=LABEL_SIZE)
    return fig
