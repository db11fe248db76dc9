"""Which cluster a run uses: a new local one, the configured address, or the Ray Job's own cluster."""

from __future__ import annotations

import pytest

from skillmoe_ray_actors.cluster import start_ray
from tests.conftest import make_config


@pytest.fixture
def ray_init(monkeypatch):
    """ray.init replaced by a recorder; Ray is never started."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


def test_without_an_address_a_new_local_cluster_starts_even_beside_a_ray_start_cluster(ray_init, tmp_path):
    start_ray(make_config(tmp_path, ["resources.gpus=2"]))
    (call,) = ray_init
    assert call["address"] == "local" and call["include_dashboard"] is False


def test_a_configured_address_is_joined_without_local_resources(ray_init, tmp_path):
    start_ray(make_config(tmp_path, ["resources.ray_address=auto"]))
    assert ray_init == [{"address": "auto", "logging_level": ray_init[0]["logging_level"]}]


def test_inside_a_ray_job_the_run_joins_the_jobs_cluster(ray_init, monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_ADDRESS", "192.0.2.7:6379")
    start_ray(make_config(tmp_path))
    (call,) = ray_init
    assert call["address"] == "192.0.2.7:6379" and "num_cpus" not in call and "num_gpus" not in call


def test_resources_dashboard_starts_rays_dashboard_with_a_local_cluster(ray_init, tmp_path):
    start_ray(make_config(tmp_path, ["resources.dashboard=true"]))
    (call,) = ray_init
    assert call["include_dashboard"] is True


def test_sigterm_inside_a_run_unwinds_it_and_exits_with_sigterms_status():
    import os
    import signal

    from skillmoe_ray.termination import sigterm_exits

    before = signal.getsignal(signal.SIGTERM)
    unwound = []
    with pytest.raises(SystemExit) as stopped, sigterm_exits():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        finally:
            unwound.append(True)
    assert stopped.value.code == 143 and unwound == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_without_cuda_gpus_above_one_are_said_once_to_be_logical_slots(ray_init, monkeypatch, capsys,
                                                                       tmp_path):
    from skillmoe_ray_actors import cluster

    monkeypatch.setattr(cluster, "_has_cuda", lambda: False)
    start_ray(make_config(tmp_path, ["resources.gpus=2"]))
    out = capsys.readouterr().out
    assert out.count("logical GPU slots") == 1
    assert out.startswith("resources.gpus=2: no CUDA on this machine, so these are 2 logical GPU slots on "
                          "the CPU")
    start_ray(make_config(tmp_path, ["resources.gpus=1"]))
    assert "logical" not in capsys.readouterr().out
    monkeypatch.setattr(cluster, "_has_cuda", lambda: True)
    start_ray(make_config(tmp_path, ["resources.gpus=2"]))
    assert "logical" not in capsys.readouterr().out


def test_a_local_start_that_timed_out_is_tried_once_more_and_other_errors_are_not(monkeypatch, tmp_path):
    import ray

    from skillmoe_ray_actors.cluster import init_local_ray

    outcomes = [Exception("The current node timed out during startup. This could happen ..."), "context"]
    calls, shutdowns = [], []

    def init(**kwargs):
        calls.append(kwargs)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(True))
    assert init_local_ray(address="local") == "context" and len(calls) == 2 and shutdowns == [True]
    outcomes[:] = [ValueError("num_gpus must be >= 0")]
    with pytest.raises(ValueError, match="num_gpus"):
        init_local_ray(address="local")
