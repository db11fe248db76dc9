"""``make bench-serve``'s pure parts (percentiles, the table, the budgets, the command line) and its
closed-loop window over real HTTP with the official ``openai`` client; the benchmark itself runs services
for minutes and is run by hand (README, Serving)."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from skillmoe_ray.bench.load import Window, closed_loop, percentile
from skillmoe_ray.bench.serve import (
    Row,
    config_overrides,
    format_table,
    half_pool_gb,
    lab_setup,
    models_held,
    parse_args,
    pool_footprints,
    question_source,
    ratios_to_c,
    row_of,
    spread,
)
from skillmoe_ray.scheduling.residency import GB
from tests.conftest import JSONHandler, compose_tree, http_server


def lab_config(tmp_path, *overrides: str):
    from skillmoe_ray.config import load_config

    tree = compose_tree(["+experiment=skill_lab", "engine=hf", f"cache_dir={tmp_path / 'cache'}", *overrides])
    return load_config(tree, str(tmp_path / "run"))


def test_percentile_is_the_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(values, q) for q in (20, 50, 95, 99, 100)] == [1.0, 3.0, 5.0, 5.0, 5.0]
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([7.0], 50) == percentile([7.0], 99) == 7.0


def row(config: str, clients: int, rps: float, p50: float | None = 1.0, p95: float | None = 2.0) -> Row:
    return Row(config, clients, rps, p50, p95, p95, 10, {}, 0, 8, 0.5, 20.0)


def test_each_row_is_compared_to_c_at_the_same_concurrency():
    rows = [row("a", 1, 3.0), row("a", 32, 18.0), row("b", 32, 6.0), row("c", 1, 4.0), row("c", 32, 20.0),
            row("d", 8, 5.0)]
    assert ratios_to_c(rows) == [0.75, 0.9, 0.3, 1.0, 1.0, None]
    assert spread(row("a", 1, 3.0, 0.8, 2.0)) == 2.5 and spread(row("a", 1, 0.0, None, None)) is None


def test_the_table_puts_the_configurations_side_by_side():
    rows = [row("a", 32, 18.0), Row("b", 32, 6.0, None, None, None, 0, {"503": 4}, 12, 1, None, 20.0, 5),
            row("c", 32, 20.0)]
    header, *lines = format_table(rows).splitlines()
    assert header.split()[:4] == ["config", "clients", "req/s", "vs"]
    assert lines[0].split() == ["(a)", "default", "32", "18", "0.9", "1", "2", "2", "2", "0", "0", "0", "8",
                                "0.5"]
    assert lines[1].split() == ["(b)", "single", "32", "6", "0.3", "-", "-", "-", "-", "4", "12", "5", "1",
                                "-"]
    assert len({len(line) for line in [header, *lines]}) == 1  # aligned columns


def test_a_row_counts_the_activations_of_its_window_and_the_models_resident_at_its_end():
    window = Window([0.4, 0.2, 0.3, 0.1], {"503": 1}, 2.0)
    stats = ({"activations": 10, "resident": []},
             {"activations": 13, "loads_ahead": 2, "resident": ["x", "y"]})
    r = row_of("d", 4, window, stats, 1.23456)
    assert (r.requests_per_s, r.p50_s, r.p99_s, r.ok, r.errors) == (2.0, 0.2, 0.4, 4, {"503": 1})
    assert (r.activations, r.loads_ahead, r.resident, r.first_request_s) == (3, 2, 2, 1.235)


def test_the_half_budget_holds_half_of_the_pool_by_its_footprints():
    footprints = {"k": 1 * GB, "e1": 1 * GB, "e2": 2 * GB, "agg": 4 * GB}
    assert half_pool_gb(footprints, 1) == pytest.approx(4.08)  # half of 8 GB, and 2% slack
    assert half_pool_gb(footprints, 2) == pytest.approx(2.04)
    assert models_held(footprints, 4.0) == 3 and models_held(footprints, 0.5) == 0


def test_the_configurations_settings_on_the_lab_pool(tmp_path):
    cfg = lab_config(tmp_path, "mode=serve")
    footprints = pool_footprints(cfg)
    assert set(footprints) == set(cfg.pool) and min(footprints.values()) > 0
    assert config_overrides("a", footprints, 1) == []
    assert config_overrides("b", footprints, 1) == ["scheduler.residency=single", "serve.max_cold_wait_ms=0"]
    assert config_overrides("e", footprints, 1) == ["serve.topology=per_expert"]
    budgets = {c: float(config_overrides(c, footprints, 1)[0].split("=")[1]) for c in "cd"}
    assert models_held(footprints, budgets["c"]) == len(footprints)  # the lab's 8 models are alike in size
    assert models_held(footprints, budgets["d"]) == len(footprints) // 2


def test_the_budgets_count_the_footprints_of_the_engine_the_services_run(tmp_path):
    """``--set engine=...`` reaches the footprints that size (c) and (d), not only the serve commands."""
    cache = f"cache_dir={tmp_path / 'cache'}"
    hf, _ = lab_setup(tmp_path / "hf", [cache])
    vllm, _ = lab_setup(tmp_path / "vllm", [cache, "engine=vllm_cpu"])
    assert (hf.engine.name, vllm.engine.name) == ("hf", "vllm")
    hf_sizes, vllm_sizes = pool_footprints(hf), pool_footprints(vllm)
    assert all(vllm_sizes[name] > hf_sizes[name] for name in hf.pool)  # vLLM reserves its KV cache


def test_the_command_line_defaults_and_refusals(capsys):
    args = parse_args([])
    assert (args.configs, args.concurrency, args.window_s, args.json) == (list("abcde"), [1, 32], 20.0, None)
    args = parse_args(["--configs", "c,a,c", "--concurrency", "4", "--window-s", "3", "--json", "out.json"])
    assert (args.configs, args.concurrency, args.window_s, args.json) == (list("cac"), [4], 3.0, "out.json")
    for bad, named in ((["--configs", "a,f"], "unknown configuration 'f'; valid: a, b, c, d, e"),
                       (["--concurrency", "0,32"], "positive integers"), (["--window-s", "-1"], "positive")):
        with pytest.raises(SystemExit) as exit_:
            parse_args(bad)
        assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_every_question_sent_is_a_lab_question_never_sent_before(tmp_path):
    from skillmoe_ray.data import load_data

    cfg = lab_config(tmp_path, "data.test.size=8")
    _, test = load_data(cfg.data, cfg.seed)
    next_question = question_source(test, "77")
    sent = [next_question() for _ in range(20)]
    assert len(set(sent)) == 20 and sent[0].startswith(test[0].question) and sent[8].endswith("(77-8)")


class Alternating(JSONHandler):
    """An OpenAI-compatible stand-in: every third request is refused with 503, the others answered."""

    counter = itertools.count()

    def do_POST(self):
        self.json_body()
        if next(self.counter) % 3 == 2:
            self.reply({"error": {"message": "overloaded", "type": "overloaded", "code": "overloaded"}}, 503)
            return
        self.reply({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "symbolic-moe",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "The answer is 4."}}]})


def test_the_closed_loop_keeps_every_client_busy_and_counts_failures_by_status():
    sent = []

    def next_question() -> str:
        sent.append(f"q{len(sent)}")
        return sent[-1]

    with http_server(Alternating) as api:
        window = asyncio.run(closed_loop(api.removesuffix("/v1"), 4, 2.0, next_question, timeout=10))
    assert len(window.latencies) + window.errors["503"] == len(sent) >= 8
    assert set(window.errors) == {"503"} and window.errors["503"] >= 2 and window.wall_s >= 2.0
    json.dumps(window.errors)  # JSON-ready, as --json writes it
