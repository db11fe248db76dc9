"""One registry of the pluggable parts: engines, recruitment policies, methods and data sources.

Each entry names its implementation as a lazy ``"module:attribute"`` target (so choosing the hf engine
never imports vLLM) and states its capabilities once, here, where config validation, the planner and
the engines' callers all read them. An unknown name fails at config load with the valid names listed,
in the manner of lm-evaluation-harness's registry. The module imports nothing heavy and nothing else of
the project except its errors, so any layer may consult it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from skillmoe_ray.errors import ConfigError

__all__ = ["DATA_SOURCES", "ENGINES", "METHODS", "RECRUIT_POLICIES", "Entry", "Registry"]


@dataclass(frozen=True)
class Entry:
    """One pluggable part: its name, where its implementation lives, and what it can do.

    ``remote``: the model is served elsewhere (no weights on this disk, an activation loads nothing);
    ``steerable``: the engine reaches an MoE model's routers (DSMoE steering). Capabilities that depend on
    the engine's options (whether it can sleep) are the engine class's own ``sleeps_with``.
    """

    name: str
    target: str
    remote: bool = False
    steerable: bool = False


class Registry:
    """Named entries of one kind, with collision checks and errors that list what is available."""

    def __init__(self, kind: str, key: str, open_targets: bool = False):
        self.kind = kind  # what an entry is, for messages ("engine")
        self.key = key  # the config key that names one ("engine.name")
        self.open_targets = open_targets  # a "module:attribute" name is accepted as the user's own entry
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, **capabilities: bool) -> Entry:
        """Add an entry; a second entry under the same name is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._entries[name].target}, {target})")
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target {target!r} is not 'module:attribute'")
        entry = self._entries[name] = Entry(name, target, **capabilities)
        return entry

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, key: str | None = None) -> Entry:
        """The entry called ``name``; otherwise a ConfigError naming ``key`` and the available names.

        Where targets are open, a "module:attribute" name is an entry of its own, with no capability.
        """
        if self.open_targets and ":" in name:
            return Entry(name, name)
        if name not in self._entries:
            raise ConfigError(f"{key or self.key}: unknown {self.kind} {name!r}; available: {', '.join(self._entries)}")
        return self._entries[name]

    def check(self, names, key: str | None = None) -> None:
        """Fail on the first of ``names`` that is not registered."""
        for name in names:
            self.get(name, key)

    def load(self, name: str) -> Any:
        """The implementation of ``name``, imported now."""
        module, attribute = self.get(name).target.split(":", 1)
        return getattr(importlib.import_module(module), attribute)

    def with_capability(self, capability: str) -> tuple[str, ...]:
        """Names of the entries that have ``capability`` (for messages such as "needs one of ...")."""
        return tuple(name for name, entry in self._entries.items() if getattr(entry, capability))


ENGINES = Registry("engine", "engine.name", open_targets=True)
ENGINES.register("vllm", "skillmoe_ray.engines.vllm_engine:VLLMEngine")
ENGINES.register("hf", "skillmoe_ray.engines.hf_engine:HFEngine", steerable=True)
ENGINES.register("openai", "skillmoe_ray.engines.openai_engine:OpenAIEngine", remote=True)
# fake: canned outputs for orchestration tests; it plays an MoE engine too, so steering's plumbing is testable
ENGINES.register("fake", "skillmoe_ray.engines.fake:FakeEngine", steerable=True)

RECRUIT_POLICIES = Registry("recruitment policy", "recruit.policy")
RECRUIT_POLICIES.register("symbolic_moe", "skillmoe_ray.method.recruit:recruit_symbolic_moe")
RECRUIT_POLICIES.register("budgeted", "skillmoe_ray.method.recruit:recruit_budgeted")

METHODS = Registry("method", "compare.methods")
for _name in ("single", "self_consistency", "majority_vote", "task_level", "random", "moa", "self_moa",
              "symbolic_moe", "oracle"):
    METHODS.register(_name, f"skillmoe_ray.method.catalog:plan_{_name}")

DATA_SOURCES = Registry("data source", "data.<split>.source")
DATA_SOURCES.register("local", "skillmoe_ray.data.local:load_local")
DATA_SOURCES.register("demo", "skillmoe_ray.data.local:load_local")
DATA_SOURCES.register("hub", "skillmoe_ray.data.hub:load_hub")
DATA_SOURCES.register("lab", "skillmoe_ray.lab.world:generate_split")
