"""A whole run with engine=openai, through the command line, against an HTTP server that answers as
the fake engine would: the run must reach the same answers as the fake engine in-process, which
shows that messages, sampling and seeds travel over HTTP intact."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.engines.base import GenRequest, Sampling
from skillmoe_ray.engines.fake import FakeEngine
from tests.conftest import JSONHandler, http_server, run_cli

pytestmark = pytest.mark.ray

POOL = ["tiny-llama-a", "tiny-qwen-b", "tiny-mistral-c", "tiny-llama-d", "tiny-keyword", "tiny-aggregator"]


class FakeBacked(JSONHandler):
    """/v1/models and /v1/chat/completions, answered by one fake engine per served model."""

    engines: dict[str, FakeEngine] = {}

    def do_GET(self):
        self.reply({"object": "list", "data": [{"id": model} for model in self.engines]})

    def do_POST(self):
        body = self.json_body()
        sampling = Sampling(body["max_tokens"], body["temperature"], body["top_p"], body["seed"])
        out = self.engines[body["model"]].generate([GenRequest.make(body["messages"], sampling)])[0]
        self.reply({"choices": [{"message": {"role": "assistant", "content": out.text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.output_tokens}})


@pytest.fixture
def server():
    engines = {}
    for name in POOL:
        engines[f"fake/{name}"] = FakeEngine(ModelSpec(name=name, path=f"fake/{name}"))
        engines[f"fake/{name}"].load()
    FakeBacked.engines = engines
    with http_server(FakeBacked) as url:
        yield url


def run(tmp_path, name, engine_args):
    args = ["+experiment=demo", "pool=fake", "demo.build_models=false", *engine_args,
            f"cache_dir={tmp_path / name / 'cache'}", f"hydra.run.dir={tmp_path / name / 'run'}"]
    proc = run_cli(args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / name / "run" / "results.json").read_text())


def test_a_run_over_http_reaches_the_fake_engines_answers(server, tmp_path):
    remote = run(tmp_path, "remote", ["engine=openai", f"engine.options.base_url={server}"])
    local = run(tmp_path, "local", ["engine=fake"])
    accuracy = lambda results: {m: r["accuracy"] for m, r in results["methods"].items()}  # noqa: E731
    assert accuracy(remote) == accuracy(local)
    assert remote["recruitment"] == local["recruitment"] and remote["aggregator"] == local["aggregator"]
