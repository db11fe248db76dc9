"""Config composition and validation: the Hydra tree becomes checked dataclasses, or a clear error."""

from __future__ import annotations

import pytest

from skillmoe_ray.config import ModelSpec, check_model_paths, load_config
from skillmoe_ray.errors import ConfigError
from tests.conftest import compose_tree, make_config


def test_gpqa_experiment_has_the_papers_16_models():
    cfg = load_config(compose_tree(["+experiment=gpqa"]), "/tmp/run")
    assert len(cfg.pool) == 16
    assert cfg.pool["qwen2.5-7b-instruct"].path == "Qwen/Qwen2.5-7B-Instruct"
    assert cfg.skills.keyword_model == "qwen2.5-7b-instruct"
    assert cfg.data.test.config == "gpqa_diamond"
    assert all(not spec.is_local for spec in cfg.pool.values())


@pytest.mark.parametrize("experiment", ["gpqa", "mmlu_pro", "aime24", "medmcqa", "demo"])
def test_every_experiment_composes_and_validates(experiment):
    cfg = load_config(compose_tree([f"+experiment={experiment}"]), "/tmp/run")
    assert cfg.experiment == experiment
    assert set(cfg.aggregator_candidates()) <= set(cfg.pool)


def test_demo_pool_has_four_experts_plus_keyword_and_aggregator(tmp_path):
    cfg = load_config(compose_tree(["+experiment=demo", f"cache_dir={tmp_path}"]), "/tmp/run")
    assert len(cfg.experts) >= 4
    assert not cfg.pool["tiny-keyword"].expert and not cfg.pool["tiny-aggregator"].expert
    assert all(spec.path.startswith(str(tmp_path)) for spec in cfg.pool.values())


def test_k_below_one_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"recruit.k must be >= 1, got 0"):
        make_config(tmp_path, ["recruit.k=0"])


def test_unknown_keyword_model_lists_the_pool(tmp_path):
    with pytest.raises(ConfigError, match=r"skills.keyword_model: unknown model 'nope'.*tiny-llama-a"):
        make_config(tmp_path, ["skills.keyword_model=nope"])


def test_unknown_aggregator_candidate_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="aggregator.candidates: unknown model 'ghost'"):
        make_config(tmp_path, ["aggregator.candidates=[ghost]"])


def test_unknown_key_lists_valid_keys():
    tree = compose_tree(["+experiment=gpqa"])
    tree["recruit"]["kk"] = 3
    valid = r"^unknown key recruit.kk; valid keys of recruit: .*, k, knn, policy"
    with pytest.raises(ConfigError, match=valid):
        load_config(tree, "/tmp/run")


def test_wrong_type_names_the_key():
    tree = compose_tree(["+experiment=gpqa"])
    tree["recruit"]["k"] = "three"
    with pytest.raises(ConfigError, match="^recruit.k must be a number"):
        load_config(tree, "/tmp/run")


def test_missing_local_model_path_names_the_expert(tmp_path):
    spec = ModelSpec(name="lost", path=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"expert 'lost': model path .*nowhere' does not exist"):
        check_model_paths({"lost": spec})


def test_hub_ids_are_not_checked_on_disk():
    check_model_paths({"hub": ModelSpec(name="hub", path="Qwen/Qwen2.5-7B-Instruct")})


def test_unknown_engine_option_names_valid_options(tmp_path):
    from skillmoe_ray.engines import create_engine

    cfg = make_config(tmp_path, ["+engine.options.bogus=1"])
    with pytest.raises(
        ConfigError, match=r"engine.options.bogus: not an option of the fake engine; valid options: .*delay_s"
    ):
        create_engine(cfg.engine, cfg.pool["tiny-llama-a"])


def test_unknown_engine_name_fails_at_config_load_listing_engines(tmp_path):
    with pytest.raises(
        ConfigError, match="engine.name: unknown engine 'turbo'; available: vllm, hf, openai, fake"
    ):
        make_config(tmp_path, ["engine.name=turbo"])


def test_tracking_defaults_to_wandb_in_auto_mode_with_the_run_directory(tmp_path):
    cfg = make_config(tmp_path)
    assert cfg.tracking.mode == "auto" and cfg.tracking.project == "skillmoe-ray"
    assert cfg.tracking.dir is None and cfg.tracking.tags == ()


@pytest.mark.parametrize("mode", ["online", "offline", "disabled"])
def test_tracking_mode_is_selectable_on_the_command_line(tmp_path, mode):
    assert make_config(tmp_path, [f"tracking.mode={mode}", "tracking.tags=[a,b]"]).tracking.tags == ("a", "b")
    assert make_config(tmp_path, [f"tracking.mode={mode}"]).tracking.mode == mode


def test_tracking_disabled_group_option_still_works(tmp_path):
    assert make_config(tmp_path, ["tracking=disabled"]).tracking.mode == "disabled"


def test_unknown_tracking_mode_lists_the_valid_modes(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"tracking.mode: unknown mode 'onlin'; valid modes: auto, online, offline, disabled",
    ):
        make_config(tmp_path, ["tracking.mode=onlin"])


def test_unknown_tracking_key_lists_valid_keys(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^unknown key tracking.projet; valid keys of tracking: dir, entity"
    ):
        make_config(tmp_path, ["+tracking.projet=x"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["steering.enabled=true", "engine=vllm", "+pool.models.tiny-llama-a.moe=true"],
            "steering.enabled needs an engine that reaches the model.s routers \\(hf, fake\\)",
        ),
        (["steering.enabled=true"], "no expert of the pool is marked moe: true"),
        (
            ["steering.enabled=true", "+pool.models.tiny-llama-a.moe=true", "steering.alpha=-1"],
            "alpha must be >= 0",
        ),
    ],
)
def test_steering_settings_are_checked_with_a_message_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, overrides)


def test_unknown_repeated_skills_rule_is_an_error_naming_the_key(tmp_path):
    from tests.conftest import make_config

    with pytest.raises(ConfigError, match="skills.repeated: unknown rule 'twice'; valid: once, count"):
        make_config(tmp_path, ["skills.repeated=twice"])
    assert make_config(tmp_path, ["skills.repeated=count"]).skills.repeated == "count"


@pytest.mark.parametrize(
    "override, message",
    [
        ("serve.max_queued_requests=0", "serve.max_queued_requests must be >= 1, got 0"),
        ("serve.max_ongoing_requests=-1", "serve.max_ongoing_requests must be >= 1, got -1"),
        ("serve.request_timeout_s=0", "serve.request_timeout_s must be > 0"),
        ("serve.port=70000", "serve.port must be in 1..65535, got 70000"),
        ("serve.max_n=0", "serve.max_n must be >= 1, got 0"),
    ],
)
def test_serve_bounds_are_checked(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, [override])


def test_serve_back_pressure_keys_reach_the_config(tmp_path):
    cfg = make_config(tmp_path, ["serve.max_ongoing_requests=8", "serve.max_queued_requests=3"])
    assert (cfg.serve.max_ongoing_requests, cfg.serve.max_queued_requests) == (8, 3)


def test_serve_exposure_keys_reach_the_config_and_a_printed_config_hides_the_keys(tmp_path):
    cfg = make_config(
        tmp_path, ["serve.api_keys=[secret-1]", "serve.cors_origins=[https://app.example]", "serve.max_n=2"]
    )
    assert cfg.serve.api_keys == ("secret-1",) and cfg.serve.cors_origins == ("https://app.example",)
    assert cfg.serve.max_n == 2
    assert "secret-1" not in repr(cfg)
