"""The command line's checks before Hydra runs: unknown keys and group options, sweeps, the run directory."""

from __future__ import annotations

import pytest

from skillmoe_ray.config.hydra_checks import (
    check_command_line,
    check_directory_writable,
    single_values,
    unknown_key_message,
)
from skillmoe_ray.errors import ConfigError
from tests.conftest import REPO, TEST_CONF

CONF = str(REPO / "conf")
SEARCH = f"hydra.searchpath=[file://{TEST_CONF}]"


def test_an_unknown_key_names_the_closest_valid_ones_not_its_parent():
    message = unknown_key_message("recruit.kk",
                                  ["recruit", "recruit.k", "recruit.policy", "seed", "hydra.run.dir"])
    assert message.startswith("unknown config key 'recruit.kk'; closest valid keys: recruit.k")
    assert "recruit," not in message and "hydra" not in message and "+recruit.kk=" in message


def test_an_unknown_key_like_nothing_lists_the_keys_beside_it():
    message = unknown_key_message("recruit.zzzzzzzzzz", ["recruit", "recruit.k", "recruit.policy", "seed"],
                                  adding=False)
    assert message == "unknown config key 'recruit.zzzzzzzzzz'; valid keys here: recruit.k, recruit.policy"


@pytest.mark.parametrize("argv, expected", [
    (["+experiment=demo", "recruit.kk=3"], "unknown config key 'recruit.kk'; closest valid keys: recruit.k"),
    (["+experiment=demo", "engine=nosuch"], "engine=nosuch: no such option in config group 'engine'"),
    (["+experiment=nosuch"], "valid options: aime24, demo, gpqa, lab_hard, medmcqa, mmlu_pro, skill_lab"),
    (["+experiment=demo", "pool=fak"], "(did you mean pool=fake?)"),
    (["+experiment=demo", "recruit.k=1,2"], "recruit.k=1,2 sweeps over several values: add -m"),
    (["+experiment=demo", "recruit.kk=1,2", "-m"], "unknown config key 'recruit.kk'"),
    (["experiment=gpqa"], "experiment=gpqa: 'experiment' is a config group outside the defaults list, so "
                          "it is added with a +: write +experiment=gpqa"),
])
def test_composition_mistakes_are_one_line_config_errors(argv, expected, tmp_path):
    with pytest.raises(ConfigError) as err:
        check_command_line([SEARCH, f"hydra.run.dir={tmp_path / 'run'}", *argv], CONF)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("extra", [[], ["--help"], ["--cfg", "job"], ["recruit.k=1,2,3", "-m"]])
def test_a_good_command_line_passes_and_creates_nothing(extra, tmp_path):
    check_command_line([SEARCH, "+experiment=demo", "pool=fake", f"hydra.run.dir={tmp_path / 'run'}",
                        f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra], CONF)
    assert list(tmp_path.iterdir()) == []


def test_single_values_keeps_the_first_value_of_each_sweep():
    assert single_values(["recruit.k=range(2,5)", "engine=fake,hf", "x=[1,2]"], multirun=True) == [
        "recruit.k=2", "engine=fake", "x=[1,2]"]


def test_a_run_directory_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'a-file'} is not a directory; set hydra.run.dir="):
        check_directory_writable(str(tmp_path / "a-file" / "run"), "hydra.run.dir")
    check_directory_writable(str(tmp_path / "new" / "run"), "hydra.run.dir")
    assert list(tmp_path.iterdir()) == [tmp_path / "a-file"]  # the check leaves nothing behind


@pytest.mark.parametrize("override, expected", [
    ("mode=comapre", "mode: unknown mode 'comapre'; valid modes: run, compare, serve, plan "
                     "(did you mean mode=compare?)"),
    ("tracking.mode=onlin", "(did you mean tracking.mode=online?)"),
])
def test_a_mistyped_mode_gets_did_you_mean(override, expected, tmp_path):
    from tests.conftest import make_config

    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, [override])
    assert expected in str(err.value) and "\n" not in str(err.value)
