"""lm-evaluation-harness evaluates the service as it would any OpenAI-compatible API.

The skill lab is served (trained tiny models, transformers engine) and ``lm_eval`` runs its
``local-chat-completions`` model against it on a local JSON task made of lab test questions, with the
task's default stop sequences; nothing is downloaded. Its accuracy must equal the project's own accuracy
on the same questions (the service's extracted answers, scored by the project) within their 95% Wilson
intervals: the harness reads the reply the project scores.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.engine, pytest.mark.slow]
# Lab questions served and evaluated: 3 per skill; validation questions profile the experts.
SIZES = ["data.val.size=80", "data.test.size=24"]
TASK = "skillmoe_lab"
# The reply states "The answer is (B)." or "The answer is \boxed{42}."; the harness takes the last one stated.
ANSWER_PATTERN = r"The answer is \(([A-J])\)|\\boxed\{([^{}]*)\}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of an accuracy of ``correct`` out of ``n``."""
    p = correct / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.fixture(scope="module")
def lab_service(ray_cluster, lab_models, tmp_path_factory):
    """The skill lab served on a free port: (base URL, the lab's test questions)."""
    from ray import serve

    from skillmoe_ray.data import load_data
    from skillmoe_ray.preflight import load_checked
    from skillmoe_ray_actors.cluster import on_driver
    from skillmoe_ray_actors.serve_app import deploy
    from tests.conftest import compose_tree

    tmp, port = tmp_path_factory.mktemp("lab-serve"), free_port()
    tree = compose_tree(["+experiment=skill_lab", "engine=hf", "lab.build_models=false",
                         f"lab.models_dir={lab_models}", "mode=serve", f"cache_dir={tmp / 'cache'}",
                         f"serve.port={port}", *SIZES])
    cfg, val, _ = load_checked(tree, str(tmp / "run"))
    serve.shutdown()  # another module's application, if any: this one gets the HTTP proxy on its port
    deploy(cfg, on_driver(cfg, "prepare", val), blocking=False)
    yield f"http://127.0.0.1:{port}", load_data(cfg.data, cfg.seed)[1]
    serve.shutdown()


def write_task(root, instances) -> None:
    """A local lm-eval task: the lab questions as shown to models, their gold answers, the default stops."""
    from skillmoe_ray.method.skills import question_text

    data = root / "lab.jsonl"
    rows = [json.dumps({"question": question_text(i), "answer": i.gold}) + "\n" for i in instances]
    data.write_text("".join(rows))
    (root / f"{TASK}.yaml").write_text(yaml.safe_dump({
        "task": TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "{{question}}", "doc_to_target": "{{answer}}",
        "filter_list": [{"name": "answer", "filter": [
            {"function": "regex", "regex_pattern": ANSWER_PATTERN, "group_select": -1},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }))


def run_lm_eval(url: str, root) -> dict:
    """``lm_eval`` as a user runs it against the service, offline; its results JSON."""
    args = ["--model", "local-chat-completions", "--model_args",
            f"model=symbolic-moe,base_url={url}/v1/chat/completions,num_concurrent=8,max_retries=1,"
            "timeout=1200,tokenized_requests=False", "--apply_chat_template", "--tasks", TASK,
            "--include_path", str(root), "--output_path", str(root / "out")]
    offline = {v: "1" for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                "HF_EVALUATE_OFFLINE")}
    env = {**os.environ, **offline, "HF_DATASETS_CACHE": str(root / "hf-datasets"),
           "OPENAI_API_KEY": "unused"}
    done = subprocess.run([sys.executable, "-m", "lm_eval", *args], env=env, capture_output=True, text=True,
                          timeout=1200)
    print(done.stdout[-3000:])  # the harness's table (the README shows it)
    assert done.returncode == 0, done.stderr[-4000:]
    result = next((root / "out").rglob("results_*.json"))
    return json.loads(result.read_text())["results"][TASK]


def project_accuracy(url: str, instances) -> int:
    """Questions the project scores right: the same requests (cached), the service's extracted answers."""
    import openai

    from skillmoe_ray.method.aggregate import is_correct
    from skillmoe_ray.method.skills import question_text

    api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
    correct = 0
    for inst in instances:
        question = [{"role": "user", "content": question_text(inst)}]
        reply = api.chat.completions.create(model="symbolic-moe", messages=question, max_tokens=256,
                                            temperature=0, seed=1234)
        correct += is_correct(reply.skillmoe["answer"], inst)
    return correct


def test_lm_eval_completes_against_the_service_and_agrees_with_the_projects_accuracy(lab_service, tmp_path):
    url, instances = lab_service
    write_task(tmp_path, instances)
    harness = run_lm_eval(url, tmp_path)["exact_match,answer"]
    n, ours = len(instances), project_accuracy(url, instances)
    low, high = wilson(ours, n)
    harness_low, harness_high = wilson(round(harness * n), n)
    print(f"lm-eval exact_match {harness:.3f} [{harness_low:.3f}, {harness_high:.3f}]; "
          f"project accuracy {ours / n:.3f} [{low:.3f}, {high:.3f}] on {n} lab questions")
    assert low <= harness <= high and harness_low <= ours / n <= harness_high
    assert ours / n > 0.5  # the lab's routing pays: a broken service would not get here
