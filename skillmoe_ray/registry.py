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

    Callers test these capabilities, never an entry's name, so a new entry states what it can do here once.
    Engines: ``remote``, the model is served elsewhere (no weights on this disk, an activation loads
    nothing); ``steerable``, the engine reaches an MoE model's routers (DSMoE steering); ``has_tokenizer``,
    the models carry a tokenizer (prompt lengths can be measured before a run; true unless stated, as for a
    user's own "module:Class" engine); ``reserves_gpu_share``, the engine takes a fixed share of the GPU
    (``gpu_memory_utilization``) whatever the model's size. Capabilities that depend on the engine's
    options (whether it can sleep) are the engine class's own ``sleeps_with``.
    Data sources: ``offline``, the split is read or generated here, with no download (``mode=plan`` loads it).
    Methods: ``servable``, the method needs nothing a served request lacks (the service offers it);
    ``own_policy``, its experts are those the recruitment policy of its name recruits (the rival routers).
    Recruitment policies: ``embeds``, the policy routes by question embeddings, so its caller gives it the
    validation and test questions' embeddings and the profiles' grading (a ``QuestionEvidence``).
    """

    name: str
    target: str
    remote: bool = False
    steerable: bool = False
    has_tokenizer: bool = True
    reserves_gpu_share: bool = False
    offline: bool = False
    servable: bool = False
    own_policy: bool = False
    embeds: bool = False


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
            raise ValueError(
                f"{self.kind} {name!r} is registered twice ({self._entries[name].target}, {target})"
            )
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
            raise ConfigError(
                f"{key or self.key}: unknown {self.kind} {name!r}; available: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def check(self, names, key: str | None = None) -> None:
        """Fail on the first of ``names`` that is not registered."""
        for name in names:
            self.get(name, key)

    def load(self, name: str, key: str | None = None) -> Any:
        """The implementation of ``name``, imported now (an unknown name fails as in :meth:`get`)."""
        module, attribute = self.get(name, key).target.split(":", 1)
        return getattr(importlib.import_module(module), attribute)

    def with_capability(self, capability: str) -> tuple[str, ...]:
        """Names of the entries that have ``capability`` (for messages such as "needs one of ...")."""
        return tuple(name for name, entry in self._entries.items() if getattr(entry, capability))


ENGINES = Registry("engine", "engine.name", open_targets=True)
ENGINES.register("vllm", "skillmoe_ray.engines.vllm_engine:VLLMEngine", reserves_gpu_share=True)
ENGINES.register("hf", "skillmoe_ray.engines.hf_engine:HFEngine", steerable=True)
ENGINES.register("openai", "skillmoe_ray.engines.openai_engine:OpenAIEngine", remote=True)
# fake: canned outputs for orchestration tests; it plays an MoE engine too, so steering's plumbing is
# testable; its models are config stubs with no tokenizer
ENGINES.register("fake", "skillmoe_ray.engines.fake:FakeEngine", steerable=True, has_tokenizer=False)

RECRUIT_POLICIES = Registry("recruitment policy", "recruit.policy")
RECRUIT_POLICIES.register("symbolic_moe", "skillmoe_ray.method.recruit:recruit_symbolic_moe")
RECRUIT_POLICIES.register("budgeted", "skillmoe_ray.method.recruit:recruit_budgeted")
# The rival routers (DESIGN section 6): Avengers' cluster routing and a nearest-neighbour router
RECRUIT_POLICIES.register("avengers", "skillmoe_ray.method.rivals:recruit_avengers", embeds=True)
RECRUIT_POLICIES.register("knn", "skillmoe_ray.method.rivals:recruit_knn", embeds=True)

METHODS = Registry("method", "compare.methods")
for _name in ("single", "self_consistency", "majority_vote", "task_level", "random", "moa", "self_moa",
              "symbolic_moe"):
    METHODS.register(_name, f"skillmoe_ray.method.catalog:plan_{_name}", servable=True)
# The rival routers' own recruitments, combined by vote or the aggregator (recruit.<name>.combine)
for _name in ("avengers", "knn"):
    METHODS.register(_name, f"skillmoe_ray.method.catalog:plan_{_name}", servable=True, own_policy=True)
# oracle: the upper bound that routes each question by its gold skill, which a served request does not carry
METHODS.register("oracle", "skillmoe_ray.method.catalog:plan_oracle")

# Every source is called as source(spec, task, where, seed) -> list[Instance] (skillmoe_ray.data.DataSource).
DATA_SOURCES = Registry("data source", "data.<split>.source")
DATA_SOURCES.register("local", "skillmoe_ray.data.local:local_source", offline=True)
DATA_SOURCES.register("demo", "skillmoe_ray.data.local:demo_source", offline=True)
DATA_SOURCES.register("hub", "skillmoe_ray.data.hub:hub_source")
DATA_SOURCES.register("lab", "skillmoe_ray.lab.world:lab_source", offline=True)
