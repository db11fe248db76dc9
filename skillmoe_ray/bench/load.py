"""Load test of a running skillmoe-ray service: throughput and latency at several concurrency levels.

    python -m skillmoe_ray.bench.load --url http://127.0.0.1:8000 --concurrency 1,4,16,32 --requests 32

The closed-loop window of ``make bench-serve`` (:mod:`skillmoe_ray.bench.serve`) lives here too.

Bounded on purpose: a fixed number of requests per level and a wall-clock cap per level, and only
loopback addresses are accepted as targets. Questions come from the project's demo set; each
request gets a distinct suffix so the service's generation cache cannot answer it for free.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from urllib.parse import urlparse

from skillmoe_ray.data import demo_data_path
from skillmoe_ray.data.instances import format_choices


def require_loopback(url: str) -> str:
    """The URL, if its host is a loopback address; ValueError otherwise."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass
    raise ValueError(f"refusing to load-test {host!r}: only loopback addresses (127.0.0.0/8, ::1, localhost)")


def demo_questions() -> list[str]:
    """The demo test questions, with their options written out."""
    out = []
    for line in demo_data_path("test.jsonl").read_text().splitlines():
        row = json.loads(line)
        text = row["question"]
        if row.get("choices"):
            text += "\n\n" + format_choices(tuple(row["choices"]))
        out.append(text)
    return out


def one_request(url: str, model: str, question: str, timeout: float) -> tuple[int, float]:
    """(HTTP status, seconds) of one chat completion; status 0 for a connection error or timeout."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": question}]}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError):
        status = 0
    return status, time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of ``values``, nearest rank: the smallest value with q% of them at or below it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class Window:
    """What a closed-loop window measured: the answered requests' latencies, the failures by HTTP status
    (or error class when no status came back), and the seconds from the first request to the last reply."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def openai_client(url: str, timeout: float):
    """The official async ``openai`` client of the service at ``url``; no retries: every failure counts."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=timeout)


async def timed_request(client, model: str, question: str, window: Window) -> None:
    """One chat completion, its latency or its failure recorded in ``window``."""
    import openai

    start = time.perf_counter()
    try:
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
        window.latencies.append(time.perf_counter() - start)
    except openai.APIError as exc:  # a status (503, 504, ...), a refused connection or a client timeout
        key = str(getattr(exc, "status_code", None) or type(exc).__name__)
        window.errors[key] = window.errors.get(key, 0) + 1
        await asyncio.sleep(0.05)  # a dead service fails at once: do not spin on it


async def closed_loop(url: str, clients: int, window_s: float, next_question: Callable[[], str],
                      timeout: float = 300.0, model: str = "symbolic-moe") -> Window:
    """``clients`` concurrent clients, each its own ``openai`` client sending its next question as soon as
    the last is answered, for ``window_s`` seconds; the requests in flight at the end are waited for."""
    window = Window()
    made = [openai_client(url, timeout) for _ in range(clients)]  # before the clock: the first imports openai
    start = time.perf_counter()
    deadline = start + window_s

    async def one_client(client) -> None:
        async with client:
            while time.perf_counter() < deadline:
                await timed_request(client, model, next_question(), window)

    await asyncio.gather(*(one_client(client) for client in made))
    window.wall_s = time.perf_counter() - start
    return window


def run_level(url: str, model: str, questions: list[str], concurrency: int, count: int, max_seconds: float,
              tag: str) -> dict:
    """Send ``count`` requests with ``concurrency`` in flight, stopping new ones after ``max_seconds``."""
    start = time.perf_counter()
    results: list[tuple[int, float]] = []
    with ThreadPoolExecutor(concurrency) as pool:
        futures = []
        for i in range(count):
            question = f"{questions[i % len(questions)]}\n(load {tag}-{concurrency}-{i})"
            futures.append(pool.submit(one_request, url, model, question, max_seconds))
        for future in as_completed(futures, timeout=max_seconds * 2):
            results.append(future.result())
            if time.perf_counter() - start > max_seconds:
                for f in futures:
                    f.cancel()
                break
    wall = time.perf_counter() - start
    ok = [s for code, s in results if code == 200]
    codes: dict[int, int] = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    return {
        "concurrency": concurrency,
        "sent": len(results),
        "ok": len(ok),
        "codes": codes,
        "throughput_rps": round(len(ok) / wall, 3),
        "p50_s": round(percentile(ok, 50), 3) if ok else None,
        "p99_s": round(percentile(ok, 99), 3) if ok else None,
        "mean_s": round(statistics.mean(ok), 3) if ok else None,
        "wall_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL (loopback only)")
    parser.add_argument("--model", default="symbolic-moe", help="the request's model field")
    parser.add_argument("--concurrency", default="1,4,16,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=32, help="requests per level")
    parser.add_argument("--max-seconds", type=float, default=300, help="wall-clock cap per level")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    url = require_loopback(args.url.rstrip("/"))
    questions, tag = demo_questions(), str(int(time.time()))
    rows = [run_level(url, args.model, questions, int(c), args.requests, args.max_seconds, tag)
            for c in args.concurrency.split(",")]
    print(f"{'concurrency':>11} {'ok/sent':>8} {'req/s':>7} {'p50 s':>7} {'p99 s':>7}  status codes")
    for r in rows:
        print(
            f"{r['concurrency']:>11} {r['ok']:>3}/{r['sent']:<4} {r['throughput_rps']:>7} "
            f"{r['p50_s'] if r['p50_s'] is not None else '-':>7} "
            f"{r['p99_s'] if r['p99_s'] is not None else '-':>7}  {r['codes']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
