"""A multi-GPU expert (tensor_parallel_size > 1) is refused when the config loads, before Ray starts."""

from __future__ import annotations

import pytest

from skillmoe_ray.errors import ConfigError
from tests.conftest import make_config


@pytest.mark.parametrize("override, key", [
    ("+pool.models.tiny-llama-a.tensor_parallel_size=2", "pool.models.tiny-llama-a.tensor_parallel_size=2"),
    ("+pool.models.tiny-llama-a.engine_kwargs={tensor_parallel_size: 2}",
     "pool.models.tiny-llama-a.engine_kwargs.tensor_parallel_size=2"),
    ("+engine.kwargs={pipeline_parallel_size: 2}",
     "pool.models.tiny-llama-a.engine_kwargs.pipeline_parallel_size=2"),
])
def test_a_multi_gpu_expert_is_refused_in_one_line_pointing_to_a_served_model(tmp_path, override, key):
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, ["engine=vllm", override])
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message
    assert "engine=openai" in message and "vllm serve fake/tiny-llama-a --" in message


def test_a_served_model_may_be_tensor_parallel_on_its_server(tmp_path):
    cfg = make_config(tmp_path, ["engine=openai", "+pool.models.tiny-llama-a.tensor_parallel_size=2"])
    assert cfg.pool["tiny-llama-a"].tensor_parallel_size == 2


def test_the_config_is_checked_before_ray_starts():
    """run.py loads (and so validates) the config before it starts Ray: the refusal costs no cluster."""
    import inspect

    from skillmoe_ray import run

    source = inspect.getsource(run)
    assert source.index("load_checked(") < source.index("start_ray(")
