"""serve.topology=per_expert on two Ray nodes started on this machine (Ray's own ``ray.cluster_utils``), each
with a custom resource that pins models to it: the models' replicas run where configured, 32 concurrent
requests through the official openai client are answered as the single topology answers them, and killing
an expert's replica while requests run costs no other request: Serve replaces it and the service answers.

The service runs as a user starts it (``python -m skillmoe_ray.run mode=serve`` joining the cluster through
RAY_ADDRESS), so the test process never joins the cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.conftest import FAKE_DEMO, TEST_CONF
from tests.ray.serve_client import QUESTION, client, free_port, get

pytestmark = [pytest.mark.ray]

# Replicas of these models need node_b (the worker node); every other model needs node_a (the head).
ON_NODE_B = ("tiny-llama-a", "tiny-qwen-b", "tiny-aggregator")
PINNED = ["serve.topology=per_expert",
          "serve.deployments.default.ray_actor_options={resources: {node_a: 0.01}}",
          *(f"+serve.deployments.{m}.ray_actor_options={{resources: {{node_b: 0.01}}}}" for m in ON_NODE_B)]
# Seconds each engine call takes: the call is still running when its replica is killed
SLOW = ["engine.options.delay_s=1.0"]
READY_LINE = "skillmoe-ray is serving on"


@pytest.fixture
def two_nodes():
    """A head node with {node_a: 1} and a worker node with {node_b: 1}; shut down whatever the test did."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 2, "resources": {"node_a": 1}, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, resources={"node_b": 1})
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


@contextmanager
def serving(cluster, root, overrides: list[str], timeout_s: float = 400) -> Iterator[str]:
    """``python -m skillmoe_ray.run mode=serve`` on the cluster until the block ends (SIGTERM, as Ctrl-C
    would); yields the service's URL once it says it is serving."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "skillmoe_ray.run", f"hydra.searchpath=[file://{TEST_CONF}]", *FAKE_DEMO,
               "mode=serve", f"serve.port={port}", f"cache_dir={root / 'cache'}",
               f"hydra.run.dir={root / 'run'}", *overrides]
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.wait(1) and proc.poll() is None and time.monotonic() < deadline:
            pass
        assert ready.is_set(), "".join(lines[-60:])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ask_all(url: str, questions: list[str]) -> list:
    """(status, reply or error body) of each question, all at once through the openai client."""
    import openai

    def ask(question: str):
        try:
            reply = client(url).chat.completions.create(
                model="symbolic-moe", messages=[{"role": "user", "content": question}], seed=3)
            return 200, (reply.choices[0].message.content, reply.skillmoe["experts"])
        except openai.APIStatusError as exc:
            return exc.status_code, exc.body

    with ThreadPoolExecutor(len(questions)) as pool:
        return list(pool.map(ask, questions))


def wait_for(check, timeout_s: float = 180, every_s: float = 1.0):
    """The first truthy ``check()`` within ``timeout_s``; fails with the last value otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not within {timeout_s:g} s"
            return value
        time.sleep(every_s)


def placements(url: str) -> dict[str, dict]:
    return {name: d["answered_by"] for name, d in get(url, "/v1/stats")["deployments"].items()}


@pytest.mark.slow  # two nodes, two starts of the service (one per topology), a replica replaced
def test_two_nodes_place_models_as_pinned_answer_as_single_and_survive_a_killed_replica(two_nodes, tmp_path):
    cluster, worker = two_nodes
    head, node_b = cluster.head_node.node_id, worker.node_id
    questions = [f"{QUESTION} (variant {i})" for i in range(32)]
    marker = tmp_path / "expert-called"
    marker.write_text("")  # present: the fake engine signals nothing until the test removes it
    slow = [*SLOW, f"+engine.options.signal_once=answer:{marker}"]
    with serving(cluster, tmp_path / "per_expert", [*PINNED, *slow]) as url:
        shutil.copytree(tmp_path / "per_expert" / "cache", tmp_path / "single" / "cache")  # the preparation
        where = wait_for(lambda: (p := placements(url)) and all(p.values()) and p)
        assert {m: w["node"] for m, w in where.items()} == {
            m: node_b if m in ON_NODE_B else head for m in where}
        answered = ask_all(url, questions)
        assert [status for status, _ in answered] == [200] * 32

        # a killed replica: only requests that needed it may fail (cleanly), Serve starts another in its place
        marker.unlink()  # the next expert call of the answer stage names its model in the marker, then sleeps
        faulted = [f"{QUESTION} (under fault {i})" for i in range(32)]
        load = ThreadPoolExecutor(1).submit(ask_all, url, faulted)
        model = wait_for(lambda: marker.exists() and marker.read_text(), every_s=0.02)
        os.kill(where[model]["pid"], signal.SIGKILL)  # while the router's call waits on it
        during = load.result(timeout=300)
        assert {status for status, _ in during} <= {200, 502, 503}, during
        for status, body in during:
            if status != 200:
                assert set(body) >= {"message", "type", "code"}, body  # OpenAI's error object
        stats = get(url, "/v1/stats")["deployments"]
        assert stats[model]["failures"] >= 1  # the call in flight failed with its replica
        assert all(d["failures"] == 0 for m, d in stats.items() if m != model), stats
        replaced = wait_for(lambda: (w := placements(url)[model]) and w["pid"] != where[model]["pid"] and w)
        assert replaced["node"] == where[model]["node"]
        after = ask_all(url, [f"{QUESTION} (after the fault {i})" for i in range(8)])
        assert [status for status, _ in after] == [200] * 8
        assert get(url, "/healthz")["deployments"][model]["replicas"] == 1

    with serving(cluster, tmp_path / "single", slow) as url:
        assert ask_all(url, questions) == answered
