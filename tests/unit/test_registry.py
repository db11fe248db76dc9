"""The registry of pluggable parts: lazy targets, collisions, capabilities, and errors at config load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from skillmoe_ray.errors import ConfigError
from skillmoe_ray.registry import DATA_SOURCES, ENGINES, METHODS, RECRUIT_POLICIES, Registry
from tests.conftest import make_config


def test_a_name_registered_twice_is_refused():
    reg = Registry("widget", "widgets.name")
    reg.register("a", "json:dumps")
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a", "json:loads")
    with pytest.raises(ValueError, match="not 'module:attribute'"):
        reg.register("b", "json.dumps")


def test_an_unknown_name_lists_the_available_ones_under_its_key():
    reg = Registry("widget", "widgets.name")
    reg.register("a", "json:dumps")
    reg.register("b", "json:loads")
    with pytest.raises(ConfigError, match=r"^widgets.name: unknown widget 'c'; available: a, b$"):
        reg.get("c")
    with pytest.raises(ConfigError, match=r"^other.key: unknown widget 'c'"):
        reg.check(["a", "c"], "other.key")
    assert reg.load("b") is __import__("json").loads


@pytest.mark.parametrize("registry", [ENGINES, RECRUIT_POLICIES, METHODS, DATA_SOURCES], ids=lambda r: r.kind)
def test_every_registered_target_resolves(registry):
    for name in registry.names():
        assert callable(registry.load(name)), name


def test_capabilities_are_stated_once_in_the_registry():
    assert ENGINES.with_capability("remote") == ("openai",)
    assert set(ENGINES.with_capability("steerable")) == {"hf", "fake"}


def test_loading_the_registry_and_the_engine_classes_imports_no_backend():
    code = ("import sys; from skillmoe_ray.registry import ENGINES; "
            "[ENGINES.load(n) for n in ENGINES.names()]; "
            "print(sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("override, message", [
    ("engine.name=turbo", "engine.name: unknown engine 'turbo'; available: vllm, hf, openai, fake"),
    ("recruit.policy=lottery",
     "recruit.policy: unknown recruitment policy 'lottery'; available: symbolic_moe, budgeted, avengers, "
     "knn"),
    ("compare.methods=[single,prophet]", "compare.methods: unknown method 'prophet'; available: single,"),
    ("data.test.source=ftp", "data.test.source: unknown data source 'ftp'; available: local, demo, hub, lab"),
])
def test_an_unknown_part_fails_at_config_load_with_the_valid_names(tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, [override])
    assert str(err.value).startswith(message)


def test_steering_on_an_engine_without_router_access_names_the_engines_that_have_it(tmp_path):
    with pytest.raises(ConfigError,
                       match=r"steering.enabled needs an engine that reaches the model's routers "
                                          r"\(hf, fake\); got engine=vllm"):
        make_config(tmp_path, ["engine=vllm", "steering.enabled=true"])


def test_the_planner_asks_the_engine_class_whether_it_sleeps(tmp_path):
    from skillmoe_ray.forecast.planner import engine_can_sleep

    assert engine_can_sleep(make_config(tmp_path, ["engine=hf"]))
    assert not engine_can_sleep(make_config(tmp_path, ["engine=vllm_cpu"]))
    assert engine_can_sleep(make_config(tmp_path, ["engine=vllm"]))
    assert not engine_can_sleep(make_config(tmp_path, ["engine=vllm", "engine.options.sleep_mode=false"]))


def test_what_callers_used_to_test_by_name_is_a_capability_of_the_entry():
    assert DATA_SOURCES.with_capability("offline") == ("local", "demo", "lab")  # mode=plan loads these
    assert ENGINES.with_capability("reserves_gpu_share") == ("vllm",)
    assert "fake" not in ENGINES.with_capability("has_tokenizer")
    assert ENGINES.get("my.mod:Engine").has_tokenizer  # a user's own engine is measured as before
    assert set(METHODS.names()) - set(METHODS.with_capability("servable")) == {"oracle"}


def test_every_data_source_is_loaded_through_the_registry(tmp_path):
    from skillmoe_ray.config import SplitSpec
    from skillmoe_ray.data import load_split

    lab = load_split(SplitSpec(source="lab", size=4), "lab", "data.val", seed=1)
    assert len(lab) == 4 and all(inst.id.startswith("lab-val-") for inst in lab)
    demo = load_split(SplitSpec(source="demo", path="test.jsonl"), "demo", "data.test")
    assert demo and demo[0].id == "test-mc-001"  # rows carry their own ids and tasks
    with pytest.raises(ConfigError, match=r"^data.test.path is required for source 'local'"):
        load_split(SplitSpec(source="local"), "t", "data.test")
    with pytest.raises(ConfigError, match=r"^data.val: source 'hub' needs dataset and split"):
        load_split(SplitSpec(source="hub"), "t", "data.val")
    with pytest.raises(ConfigError, match=r"^data.val.source: unknown data source 'ftp'"):
        load_split(SplitSpec(source="ftp"), "t", "data.val")
