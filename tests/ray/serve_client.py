"""What the Serve tests share: HTTP helpers over loopback, the deployment of the application in the test's
Ray cluster, and the official ``openai`` client as a user's program."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Serve keeps the HTTP proxy of its first start: redeployments in this module reuse the port.
PORT = free_port()
# The API key of the fake service (sent by every request here; a service without keys ignores it).
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def post(url: str, body: bytes | dict, timeout: float = 300, headers: dict | None = None,
         path: str = "/v1/chat/completions") -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a POST (to /v1/chat/completions unless ``path`` says otherwise)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    request = urllib.request.Request(f"{url}{path}", data, {k: v for k, v in sent.items() if v is not None})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(f"{url}{path}", headers=AUTH), timeout=30) as r:
        return json.loads(r.read())


def ask(question: str, model: str = "symbolic-moe", **skillmoe) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    return {**body, "skillmoe": skillmoe} if skillmoe else body


def deploy(tmp_path, overrides: list[str], fake: bool = False) -> str:
    """Prepare and deploy the service; returns its base URL."""
    from skillmoe_ray.preflight import load_checked
    from skillmoe_ray_actors.cluster import on_driver
    from skillmoe_ray_actors.serve_app import deploy as serve_deploy
    from tests.conftest import FAKE_DEMO, compose_tree

    port = PORT
    base = FAKE_DEMO if fake else ["+experiment=demo", "engine=hf"]
    tree = compose_tree([*base, "mode=serve", f"cache_dir={tmp_path / 'cache'}", f"serve.port={port}",
                         *overrides])
    cfg, val, _ = load_checked(tree, str(tmp_path / "run"))
    serve_deploy(cfg, on_driver(cfg, "prepare", val), blocking=False)
    return f"http://127.0.0.1:{port}"


def client(url: str, key: str = KEY):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


QUESTION = "A fair die is rolled twice. What is the probability that the sum is a prime number?"
USER = [{"role": "user", "content": QUESTION}]
