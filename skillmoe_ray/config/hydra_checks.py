"""Command-line mistakes Hydra itself would report with a traceback or a multi-line message, caught first.

Before ``hydra.main`` runs, the command line's overrides are composed once with Hydra's compose API.
An unknown key (``recruit.kk=3``) becomes one line naming the closest valid keys, an unknown option of a
config group (``engine=nosuch``) one line naming the valid options, and a run directory that cannot be
created or written (which Hydra creates before any of our code runs) one line naming it and the fix.
Each is a :class:`ConfigError`, printed by the CLI as ``error: ...`` with exit code 2. Help, ``--info``,
shell completion and other config sources (``--config-path``...) are left to Hydra untouched.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from skillmoe_ray.errors import ConfigError

# Hydra flags after which there is nothing of ours to check (help, info, or another config than conf/)
LEFT_TO_HYDRA = ("help", "hydra_help", "info", "shell_completion", "version", "config_path", "config_name",
                 "config_dir", "experimental_rerun")
UNKNOWN_KEY = re.compile(
    r"Could not override '([^']+)'|Could not delete from config\. '([^']+)' does not exist"
)


def check_command_line(argv: list[str], config_dir: str, config_name: str = "config") -> None:
    """Raise a one-line ConfigError for unknown keys or group options and an unwritable run directory."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:  # a malformed command line: Hydra's own parser says so when it runs
        return
    if any(getattr(args, flag, None) for flag in LEFT_TO_HYDRA):
        return
    overrides = single_values(args.overrides, args.multirun)
    cfg = compose_checked(config_dir, config_name, overrides)
    if args.cfg is None:  # a run: Hydra creates the run (or sweep) directory before the job starts
        key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
        try:
            directory = str(cfg.hydra.sweep.dir if args.multirun else cfg.hydra.run.dir)
        except Exception:  # an interpolation only Hydra's job context resolves: Hydra checks it itself
            return
        check_directory_writable(directory, key)


def single_values(overrides: list[str], multirun: bool) -> list[str]:
    """The overrides with each sweep (``k=1,2,3``, ``range(...)``) replaced by its first value.

    Without ``-m`` a sweep is an error (Hydra's is a paragraph); in a multirun every job composes the
    same keys and groups, so checking the first is checking all.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(one_line(str(exc))) from None
    single = []
    for override in parsed:
        if not override.is_sweep_override():
            single.append(override.input_line)
            continue
        if not multirun:
            raise ConfigError(
                f"{override.input_line} sweeps over several values: add -m (--multirun) to run each, "
                f"or write a list as {override.get_key_element()}=[a,b]"
            )
        try:
            single.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
        except Exception:  # a sweep only the sweeper expands (a glob over a group): Hydra checks it
            continue
    return single


def compose_checked(config_dir: str, config_name: str, overrides: list[str]):
    """The composed config (with its hydra node); Hydra's composition errors as one-line ConfigErrors."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException

    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        try:
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        except MissingConfigException as exc:
            raise ConfigError(missing_option_message(exc)) from None
        except HydraException as exc:
            match = UNKNOWN_KEY.search(str(exc))
            if match is None:
                raise ConfigError(one_line(str(exc))) from None
            key = match.group(1) or match.group(2)
            others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split("@", 1)[0] != key]
            if match.group(1) is not None and os.path.isdir(os.path.join(config_dir, key)):
                raise ConfigError(group_not_in_defaults_message(key, overrides)) from None
            keys = known_keys(compose, config_name, others)
            raise ConfigError(unknown_key_message(key, keys, adding=match.group(1) is not None)) from None


def group_not_in_defaults_message(group: str, overrides: list[str]) -> str:
    """``experiment=gpqa``: a config group the defaults list does not hold is added with ``+``; the fix
    named."""
    given = [o.split("=", 1)[1] for o in overrides if "=" in o and o.split("=", 1)[0] == group]
    value = given[0] if given else "<option>"
    return (
        f"{group}={value}: '{group}' is a config group outside the defaults list, so it is added with a "
        f"+: write +{group}={value}"
    )


def missing_option_message(exc) -> str:
    """``engine=nosuch``: the group's valid options, the closest first."""
    missing = exc.missing_cfg_file or ""
    if exc.options is None or "/" not in missing:  # the primary config itself, or a file without a group
        return one_line(str(exc).split("Config search path:", 1)[0])
    group, name = missing.rsplit("/", 1)
    options = sorted(exc.options)
    close = difflib.get_close_matches(name, options, n=1)
    hint = f" (did you mean {group}={close[0]}?)" if close else ""
    return (
        f"{group}={name}: no such option in config group '{group}'{hint}; valid options: {', '.join(options)}"
    )


def known_keys(compose, config_name: str, overrides: list[str]) -> list[str]:
    """Every dotted key of the composed config (lists not entered), without the unknown one's override."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    try:
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except HydraException:  # another override is wrong too: the keys of the plain config
        cfg = compose(config_name=config_name, return_hydra_config=True)
    keys: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for name, value in node.items():
            keys.append(prefix + str(name))
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return keys


def unknown_key_message(key: str, keys: list[str], adding: bool = True) -> str:
    """``recruit.kk=3``: the closest valid keys (a new key needs Hydra's ``+`` prefix)."""
    ancestors = {key.rsplit(".", n)[0] for n in range(1, key.count(".") + 1)}
    keys = [
        k for k in keys if k not in ancestors and (key.startswith("hydra.") or k.split(".")[0] != "hydra")
    ]
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    label = "closest valid keys"
    if not close:  # nothing alike: the keys beside it, or the top-level ones
        parent = key.rpartition(".")[0]
        close = sorted(k for k in keys if k.rpartition(".")[0] == parent) or sorted(
            k for k in keys if "." not in k
        )
        label = "valid keys here"
    hint = f" (a new key needs a + prefix: +{key}=...)" if adding else ""
    return f"unknown config key '{key}'; {label}: {', '.join(close)}{hint}"


def check_directory_writable(directory: str, key: str) -> None:
    """Fail when ``directory`` cannot be created or written, leaving nothing behind (Hydra creates it next).

    The nearest existing ancestor is tried by making (and removing) a directory in it: permission bits
    alone would say yes to root on a read-only mount or under /proc.
    """
    import tempfile

    path = Path(directory).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = f"set {key}=<a directory you can write>"
    if not existing.is_dir():
        raise ConfigError(f"{key}={directory} cannot be created: {existing} is not a directory; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write-check-"))
    except OSError as exc:
        where = "" if existing == path else f" in {existing}"
        raise ConfigError(
            f"{key}={directory} cannot be written{where} ({exc.strerror or exc}); {fix}"
        ) from None


def one_line(message: str) -> str:
    """A multi-line Hydra message as one line."""
    return " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
