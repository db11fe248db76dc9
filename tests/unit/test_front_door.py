"""The front door: `skillmoe-ray --help`, the set-up's last line, mode=plan's durations and assumptions, and
what the output looks like off a terminal."""

from __future__ import annotations

import re
import subprocess
import sys

from skillmoe_ray.data.instances import Instance
from skillmoe_ray.forecast.planner import UNIFORM_NOTE, format_plan, hms, make_plan
from tests.conftest import REPO, make_config


def test_help_says_what_the_tool_does_its_four_modes_examples_and_cfg_job():
    done = subprocess.run([sys.executable, "-m", "skillmoe_ray.run", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("skillmoe-ray runs Symbolic-MoE on Ray.")
    modes = re.findall(r"^  (run|compare|serve|plan) ", text, re.MULTILINE)
    assert modes == ["run", "compare", "serve", "plan"]
    examples = text.split("Example commands", 1)[1].split("\n\n", 1)[0]
    assert len(re.findall(r"^  skillmoe-ray \+experiment=", examples, re.MULTILINE)) == 4
    assert "--cfg job" in text and "experiment: aime24, demo" in text
    assert len(text.splitlines()) < 60, "the generic page printed every key of the config"


def test_the_setup_names_the_command_make_demo_runs():
    # -B: the set-up's recipe is shown even where .venv is already installed (its stamp up to date);
    # --no-print-directory: under a parent make (CI runs `make test`) make would add "Leaving directory" lines
    done = subprocess.run(["make", "--no-print-directory", "-B", "-n", "demo"], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    command = lines[-1]
    assert command.endswith("-m skillmoe_ray.run +experiment=skill_lab")
    assert any(f"setup: done; make demo runs: {command}" in line for line in lines)


def test_plan_prints_h_mm_ss_beside_seconds_and_says_what_assumes_uniform_recruitment(tmp_path):
    assert hms(3723.4) == "1:02:03" and hms(59.6) == "0:01:00"
    questions = [Instance(f"q{i}", "t", "What is 2 + 2?", "4", "math") for i in range(20)]
    text = format_plan(make_plan(make_config(tmp_path, ["mode=plan"]), questions, questions))
    header = next(line for line in text.splitlines() if "makespan s" in line)
    assert "h:mm:ss" in header and "end h:mm:ss" in text
    assert re.search(r"^\s+1\s+[\d.]+\s+\d+:\d\d:\d\d\s", text, re.MULTILINE)
    assert text.rstrip().endswith(f"note: {UNIFORM_NOTE}")
    assert "inference" in UNIFORM_NOTE and "plan.from_run" in UNIFORM_NOTE


def test_output_off_a_terminal_gets_no_ansi_colours_from_ray_prefixes(monkeypatch):
    import io

    from skillmoe_ray.progress import plain_colors_off_terminal

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    environ: dict[str, str] = {}
    plain_colors_off_terminal(environ, Terminal())
    assert environ == {}
    plain_colors_off_terminal(environ, io.StringIO())
    assert environ == {"RAY_COLOR_PREFIX": "0"}
    environ = {"RAY_COLOR_PREFIX": "1"}  # the user's choice stays
    plain_colors_off_terminal(environ, io.StringIO())
    assert environ == {"RAY_COLOR_PREFIX": "1"}
    # Ray's driver prints worker lines without colour codes under that setting
    from ray._private import worker

    out = io.StringIO()
    monkeypatch.setenv("RAY_COLOR_PREFIX", "0")
    worker.print_worker_logs({"pid": 42, "ip": "x", "localhost": "x", "lines": ["hello"],
                              "actor_name": "ExpertActor"}, out)
    assert out.getvalue() == "(ExpertActor pid=42) hello\n"


def test_what_drawing_the_report_prints_comes_before_the_summary(monkeypatch, capsys):
    """matplotlib's "building the font cache" line (first run) is printed while the report is drawn."""
    from skillmoe_ray import run
    from skillmoe_ray.reporting import report

    def drawing(run_dir, results):
        print("Matplotlib is building the font cache; this may take a moment.")
        return report.Report(report.Path(run_dir) / "report.md")

    monkeypatch.setattr(report, "write_report", drawing)
    run.write_report_line("runs/x", {}, "SUMMARY")
    assert capsys.readouterr().out.splitlines() == [
        "Matplotlib is building the font cache; this may take a moment.", "SUMMARY",
        "report: runs/x/report.md"]
