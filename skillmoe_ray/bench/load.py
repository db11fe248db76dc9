"""Load test of a running skillmoe-ray service: throughput and latency at several concurrency levels.

    python -m skillmoe_ray.bench.load --url http://127.0.0.1:8000 --concurrency 1,4,16,32 --requests 32

Bounded on purpose: a fixed number of requests per level and a wall-clock cap per level, and only
loopback addresses are accepted as targets. Questions come from the project's demo set; each
request gets a distinct suffix so the service's generation cache cannot answer it for free.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
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


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


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
