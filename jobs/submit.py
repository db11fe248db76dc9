#!/usr/bin/env python
"""Submit a skillmoe-ray run to a Ray cluster as a Ray Job (what ``ray job submit`` does), and follow it.

    python jobs/submit.py --address http://HEAD:8265 +experiment=gpqa recruit.k=5
    python jobs/submit.py --address http://HEAD:8265 --no-wait +experiment=gpqa     # print the id, return

The job runs ``python -m skillmoe_ray.run OVERRIDES`` on the cluster in the runtime environment of
jobs/runtime_env.yaml (its relative working_dir is the repository root, uploaded with the job). The
job id is printed first, on its own line of stdout; then the job's log follows until the job ends,
and the exit status is 0 only if it succeeded. Ctrl-C stops following, not the job. Launch
material only: everything the job does lives in skillmoe_ray.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNTIME_ENV = REPO / "jobs" / "runtime_env.yaml"
DEFAULT_ADDRESS = os.environ.get("RAY_API_SERVER_ADDRESS") or "http://127.0.0.1:8265"
FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit `python -m skillmoe_ray.run OVERRIDES` to a Ray cluster as a Ray Job.",
        epilog=("Options go before the Hydra overrides, e.g.: "
                "--address http://head:8265 +experiment=gpqa recruit.k=5"),
    )
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help="the cluster's dashboard (job server) address (default: $RAY_API_SERVER_ADDRESS or %(default)s)",
    )
    parser.add_argument(
        "--runtime-env",
        type=Path,
        default=DEFAULT_RUNTIME_ENV,
        help="runtime environment YAML (default: jobs/runtime_env.yaml)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="print the job id and return without following the job"
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for skillmoe_ray.run, e.g. +experiment=gpqa"
    )
    return parser.parse_args(argv)


def load_runtime_env(path: Path) -> dict:
    """The runtime environment, with a relative working_dir resolved from the repository root."""
    runtime_env = yaml.safe_load(path.read_text()) or {}
    working_dir = runtime_env.get("working_dir")
    if working_dir and "://" not in working_dir and not os.path.isabs(working_dir):
        runtime_env["working_dir"] = str((REPO / working_dir).resolve())
    return runtime_env


def entrypoint(overrides: list[str]) -> str:
    """The job's shell command line, each override quoted so that brackets and spaces survive."""
    return " ".join(["python", "-m", "skillmoe_ray.run", *map(shlex.quote, overrides)])


async def print_logs(client, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        print(chunk, end="", flush=True)


def wait_for_end(client, job_id: str, poll_s: float = 1.0) -> str:
    """Follow the job's log until it ends; returns its final status."""
    asyncio.run(print_logs(client, job_id))
    status = str(client.get_job_status(job_id))
    while status.split(".")[-1] not in FINAL_STATES:  # the log can close a moment before the status is final
        time.sleep(poll_s)
        status = str(client.get_job_status(job_id))
    return status.split(".")[-1]


def main(argv: list[str] | None = None) -> int:
    from ray.job_submission import JobSubmissionClient

    args = parse_args(sys.argv[1:] if argv is None else argv)
    client = JobSubmissionClient(args.address)
    job_id = client.submit_job(
        entrypoint=entrypoint(args.overrides), runtime_env=load_runtime_env(args.runtime_env)
    )
    print(job_id, flush=True)
    if args.no_wait:
        print(f"follow it with: ray job logs --address {args.address} --follow {job_id}", file=sys.stderr)
        return 0
    try:
        status = wait_for_end(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; the job goes on (ray job stop --address {args.address} {job_id})",
            file=sys.stderr,
        )
        return 130
    print(f"job {job_id}: {status}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
