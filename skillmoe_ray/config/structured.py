"""Plain dicts to dataclasses, with errors that name the bad key.

The composed Hydra tree is converted once, at the boundary. Unknown keys are an error listing the
valid ones, missing required keys are named, and values are checked against the annotations, so a
typo in an override fails at start-up with a message instead of deep inside a run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from skillmoe_ray.errors import ConfigError


def build(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a plain dict, naming ``where`` (its dotted key; "" for the root) in
    any error.

    Unknown keys are an error listing the valid ones; missing required keys are an error naming
    them; nested dataclasses, tuples and dicts of dataclasses are built recursively.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(data).__name__}: {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {_key(where, unknown[0])}; valid keys{f' of {where}' if where else ''}: "
            f"{', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], _key(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {_key(where, name)}")
    return cls(**kwargs)


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Convert one config value to the annotated type, or raise naming ``where``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _coerce(hint, value, where)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    return value
