"""The run report: report.md with the accuracy table.

Four PNG plots with labelled, unclipped, readable text.
"""

from __future__ import annotations

import json
import struct
import sys

import pytest

from skillmoe_ray.reporting.report import (
    PLOTS,
    build_figures,
    expert_usage,
    read_jsonl,
    top_skills,
    write_report,
)
from tests.conftest import make_config
from tests.unit.test_pipeline import run_pipeline

MIN_FONT_PT = 8


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One in-process fake-engine demo run: (run directory, results)."""
    tmp = tmp_path_factory.mktemp("report")
    results, _ = run_pipeline(make_config(tmp))
    return tmp / "run", results


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def assert_readable(fig) -> None:
    """Title, axis labels on every plot axes, no text below MIN_FONT_PT, no text outside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    assert fig.get_suptitle().strip()
    plot_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert plot_axes
    for ax in plot_axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip()
    for text in fig.findobj(Text):
        if text.get_text().strip():
            assert text.get_fontsize() >= MIN_FONT_PT, text.get_text()
    drawn, page = fig.get_tightbbox(renderer), fig.bbox_inches  # everything drawn, and the page (inches)
    assert drawn.x0 >= page.x0 - 0.02 and drawn.x1 <= page.x1 + 0.02, (
        f"text cut off at the sides: {drawn} vs {page}"
    )
    assert drawn.y0 >= page.y0 - 0.02 and drawn.y1 <= page.y1 + 0.02, (
        f"text cut off at the top or bottom: {drawn} vs {page}"
    )


def test_top_skills_are_the_most_frequent_then_by_name():
    per_skill = {"b": {"n": 3}, "a": {"n": 3}, "c": {"n": 9}, "d": {"n": 1}}
    assert top_skills(per_skill, 3) == ["c", "a", "b"]


def test_expert_usage_counts_every_slot_for_every_skill_of_the_instance():
    rows = [
        {"skills": ["algebra", "optics"], "experts": ["x", "x", "y"]},
        {"skills": ["algebra"], "experts": ["z", "y", "y"]},
        {"skills": [], "experts": ["x", "y", "z"]},
    ]
    skills, experts, counts = expert_usage(rows, ["x", "y", "w"], limit=2)
    assert experts == ["x", "y", "w", "z"]  # pool order, never-recruited w kept, then others
    assert skills == ["algebra", "(no skill)"]  # optics (3 slots) ties with (no skill) and loses on the name
    assert counts == [[2, 3, 0, 1], [1, 1, 0, 1]]


def test_demo_report_has_the_four_pngs_and_the_accuracy_table(demo_run):
    run_dir, results = demo_run
    report = write_report(run_dir, results)
    assert report.path == run_dir / "report.md" and report.missing_plots is None
    assert set(report.plots) == set(PLOTS)
    for name, path in report.plots.items():
        assert path == run_dir / f"{name}.png"
        width, height = png_size(path)
        assert width >= 600 and height >= 250, (name, width, height)
    text = report.path.read_text()
    assert "| method | accuracy | demo_math | demo_mc |" in text
    accuracy = results["methods"]["symbolic_moe"]["accuracy"]
    stderr = results["methods"]["symbolic_moe"]["stderr"]
    lo, hi = results["methods"]["symbolic_moe"]["ci95"]
    assert f"| symbolic_moe | {accuracy:.3f} +/- {stderr:.3f} [{lo:.3f}, {hi:.3f}] |" in text
    assert "95% Wilson interval" in text
    for name, heading in PLOTS.items():
        assert f"![{heading}]({name}.png)" in text
    assert "| genetics |" in text or "| skill | instances | accuracy |" in text


def test_accuracy_plots_end_at_one_and_draw_the_wilson_interval(demo_run):
    """A bar at 1.0 from 15 questions gets an error bar down to its interval's low end, not none."""
    run_dir, results = demo_run
    methods = {"perfect": {"accuracy": 1.0, "stderr": 0.0, "ci95": [0.7961, 1.0]}, **results["methods"]}
    recruitments = read_jsonl(run_dir / "recruitment.jsonl")
    fig = build_figures({**results, "methods": methods}, recruitments)["accuracy_by_method"]
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 1.0)
    title = fig.get_suptitle().replace("\n", " ")
    assert "baselines (single experts, random, MoA, ...): rerun with mode=compare" in title
    labels = [t.get_text() for t in ax.texts]
    assert "1.000 [0.80, 1.00]" in labels
    bars = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    segments = bars[0].errorbar.lines[2][0].get_segments()
    assert abs(segments[0][0][0] - 0.7961) < 1e-6 and abs(segments[0][1][0] - 1.0) < 1e-6


@pytest.mark.parametrize("name", list(PLOTS))
def test_every_plot_has_a_title_labelled_axes_and_no_clipped_or_tiny_text(demo_run, name):
    run_dir, results = demo_run
    assert_readable(build_figures(results, read_jsonl(run_dir / "recruitment.jsonl"))[name])


def test_plots_stay_readable_with_a_big_pool_many_skills_and_long_names():
    experts = [f"deepseek-r1-distill-qwen-7b-variant-{i}" for i in range(16)]
    skills = {
        f"skill {i} organic chemistry reaction mechanisms": {"n": 40 - i % 30, "accuracy": 0.5}
        for i in range(300)
    }
    recruitments = [
        {
            "skills": list(skills)[i % 300 : i % 300 + 3],
            "experts": experts[i % 16 : i % 16 + 3] or experts[:3],
        }
        for i in range(400)
    ]
    timeline = [
        {
            "expert": e,
            "stage": s,
            "start": 10.0 * i,
            "end": 10.0 * i + 8,
            "kind": "load",
            "activation_seconds": 3.0,
        }
        for i, (s, e) in enumerate((s, e) for s in ("profiles", "inference") for e in experts)
    ]
    results = {
        "experiment": "gpqa",
        "n_instances": 198,
        "pool": experts,
        "per_skill": skills,
        "timeline": timeline,
        "wall_seconds": 320.0,
        "methods": {
            m: {"accuracy": 0.4} for m in ["single", *(f"single/{e}" for e in experts), "symbolic_moe"]
        },
    }
    figures = build_figures(results, recruitments, limit=25)
    for fig in figures.values():
        assert_readable(fig)
    assert "mode=compare" not in figures["accuracy_by_method"].get_suptitle()  # its baselines are shown
    ticks = [t.get_text() for t in figures["accuracy_by_skill"].axes[0].get_yticklabels()]
    assert len(ticks) == 25 and all(len(t) <= 40 for t in ticks)


def test_the_timeline_draws_generation_apart_from_a_load_that_dwarfs_it():
    from skillmoe_ray.reporting import plots

    timeline = [{"expert": "a", "stage": "inference", "start": 0.0, "end": 8.5, "activation_seconds": 8.0}]
    fig = plots.gantt(timeline, "timeline")
    assert_readable(fig)
    ax = fig.axes[0]
    spans = [
        (c.get_paths()[0].get_extents().x0, c.get_paths()[0].get_extents().x1, c.get_alpha())
        for c in ax.collections
    ]
    assert (0.0, 8.0, 0.3) in [(round(a, 3), round(b, 3), alpha) for a, b, alpha in spans]  # load: pale
    assert (8.0, 8.5, None) in [(round(a, 3), round(b, 3), alpha) for a, b, alpha in spans]  # generation
    assert " 0.5s" in [t.get_text() for t in ax.texts]


def test_expert_usage_outlines_the_specialists_of_a_gold_skill(demo_run):
    from matplotlib.patches import Rectangle

    run_dir, results = demo_run
    recruitments = [{"skills": ["successor"], "experts": ["a", "b", "a"]}]
    gold = {
        "successor": {
            "n": 1,
            "specialists": {"a": 0.9},
            "specialist_answers": 2,
            "specialist_test_accuracy": 1.0,
        }
    }
    fig = build_figures({**results, "pool": ["a", "b"], "gold_skills": gold}, recruitments)["expert_usage"]
    assert_readable(fig)
    outlined = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert [(round(p.get_x() + 0.48), round(p.get_y() + 0.48)) for p in outlined] == [(0, 0)]  # a, successor
    assert "outlined: the skill's specialists" in fig.get_suptitle().replace("\n", " ")
    plain = build_figures({**results, "pool": ["a", "b"]}, recruitments)["expert_usage"]
    assert not [p for p in plain.axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()]


def test_a_fully_cached_run_still_gets_a_labelled_timeline(demo_run):
    run_dir, results = demo_run
    assert_readable(build_figures({**results, "timeline": []}, [])["timeline"])


def test_without_matplotlib_the_report_has_the_tables_and_says_why_once(demo_run, monkeypatch, tmp_path):
    import skillmoe_ray

    run_dir, results = demo_run
    (tmp_path / "recruitment.jsonl").write_text((run_dir / "recruitment.jsonl").read_text())
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "skillmoe_ray.reporting.plots", raising=False)
    monkeypatch.delattr(skillmoe_ray, "plots", raising=False)
    report = write_report(tmp_path, json.loads((run_dir / "results.json").read_text()))
    assert report.plots == {} and "matplotlib is not installed" in report.missing_plots
    text = report.path.read_text()
    assert text.count("matplotlib is not installed") == 1
    assert "| method | accuracy |" in text and ".png" not in text
    assert not list(tmp_path.glob("*.png"))
