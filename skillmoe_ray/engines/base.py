"""The engine interface every generation backend implements.

An engine owns one model. Its lifecycle is load -> (sleep <-> wake)* -> unload, and it generates
a batch of chat requests in one call. Requests carry their own seed, so an output depends only on
(model, messages, sampling) and not on what else is in the batch; that is what makes outputs
cacheable per request and shareable between runs and methods.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.errors import ConfigError, EngineError
from skillmoe_ray.seeding import stable_hash

UNLOADED, ACTIVE, SLEEPING = "unloaded", "active", "sleeping"
PROBE_PROMPT = "Count from one to ten."
ANALYSIS_VERSION = 2


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one request; ``seed`` makes a sampled request reproducible."""

    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Steering:
    """DSMoE domain steering: ``bias`` is added to the router logits of these (layer, expert) pairs."""

    bias: float
    experts: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class GenRequest:
    """One chat completion to generate. ``tag`` says what it is for (stage/instance/slot), for logs and
    tests; ``instance_id`` is the question it answers, where it answers one.

    ``steering`` steers an MoE model's routers while it generates (DSMoE). ``analyze`` asks for
    no text but the prompt's routing statistics (:attr:`GenOutput.router`), from which the
    domain experts are identified.
    """

    messages: tuple[tuple[str, str], ...]
    sampling: Sampling
    tag: str = ""
    steering: Steering | None = None
    analyze: bool = False
    instance_id: str = ""

    @staticmethod
    def make(messages: list[dict], sampling: Sampling, tag: str = "", instance_id: str = "") -> GenRequest:
        """Build from OpenAI-style message dicts."""
        return GenRequest(
            tuple((m["role"], m["content"]) for m in messages), sampling, tag, instance_id=instance_id
        )

    def chat(self) -> list[dict]:
        """OpenAI-style message dicts."""
        return [{"role": role, "content": content} for role, content in self.messages]

    def key(self, model_fingerprint: str) -> str:
        """Content key of this request on one model: what the output is cached under.

        Steering and analysis join the key only when used, so plain requests keep their keys
        (and caches written before steering existed stay valid).
        """
        parts = [model_fingerprint, self.messages, asdict(self.sampling)]
        if self.steering is not None or self.analyze:
            parts.append(
                {"steering": asdict(self.steering) if self.steering else None, "analyze": self.analyze}
            )
        if self.analyze:
            parts.append({"analysis": ANALYSIS_VERSION})
        return stable_hash(parts, 32)


@dataclass(frozen=True)
class GenOutput:
    """The text an engine generated for one request, with token counts."""

    text: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = ""
    # analyze requests: {"counts", "saliency": [[...]], one row per MoE layer, one column per expert; "bins":
    # [[[10 saliency deciles]]]; "common": [[...]]} (skillmoe_ray.engines.moe_hooks.routing_statistics)
    router: dict | None = None

    def as_record(self) -> dict:
        """The fields a stored output keeps (``router`` only where there is one)."""
        record = asdict(self)
        if record["router"] is None:
            del record["router"]
        return record


@dataclass
class EngineInfo:
    """What an engine reports about itself: state, device, footprint and lifecycle timings."""

    state: str = UNLOADED
    device: str = "cpu"
    weight_bytes: int = 0
    can_sleep: bool = False
    timings: dict = field(default_factory=dict)


class Engine:
    """Base class of generation backends. Subclasses implement the ``_``-prefixed hooks."""

    name = "base"

    #: Whether the engine can steer an MoE model's routers and report routing statistics (DSMoE).
    steerable = False

    #: Backend-specific options and their defaults (``engine.options`` in the config).
    OPTIONS: dict = {}

    def __init__(
        self,
        spec: ModelSpec,
        options: dict | None = None,
        dtype: str = "bfloat16",
        kwargs: dict | None = None,
    ):
        self.check_options(options or {})
        self.check_kwargs(kwargs or {}, "engine.kwargs")
        self.spec = spec
        self.model_path = os.path.expanduser(spec.path)
        self.options = {**self.OPTIONS, **(options or {})}
        self.dtype = spec.dtype or dtype
        # backend arguments the project does not name, passed through as they are (engine.kwargs)
        self.kwargs = dict(kwargs or {})
        self.info = EngineInfo()

    @classmethod
    def sleeps_with(cls, options: dict) -> bool:
        """Whether this engine, configured with ``options``, will park experts in host RAM (mode=plan asks,
        before any engine exists); the instance's :attr:`can_sleep` is the answer on the machine it runs
        on."""
        return False

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Fail naming the first unknown ``engine.options`` key and the valid ones."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise ConfigError(
                f"engine.options.{unknown[0]}: not an option of the {cls.name} engine; "
                f"valid options: {', '.join(sorted(cls.OPTIONS)) or '(none)'}"
            )

    @classmethod
    def check_kwargs(cls, kwargs: dict, where: str) -> None:
        """Check pass-through arguments (``where`` is their config key) without loading anything.

        Engines that pass arguments to their backend override this; the base takes none.
        """
        if kwargs:
            raise ConfigError(
                f"{where}.{next(iter(kwargs))}: the {cls.name} engine takes no pass-through arguments"
            )

    @staticmethod
    def refuse_named(kwargs: dict, where: str, named: dict[str, str]) -> None:
        """Refuse pass-through arguments the engine sets itself, naming the config key that sets each."""
        for key in kwargs:
            if key in named:
                raise ConfigError(
                    f"{where}.{key}: set by the project, not a pass-through argument; use {named[key]}"
                )

    @property
    def can_sleep(self) -> bool:
        """Whether sleep/wake is available here (otherwise deactivation means unload)."""
        return False

    def prepare(self) -> None:
        """Import the backend ahead of ``load`` so slow imports overlap other experts' work."""

    def load(self) -> dict:
        """Load weights onto the device; returns timings in seconds."""
        start = time.perf_counter()
        self._load()
        self.info.state = ACTIVE
        self.info.can_sleep = self.can_sleep
        return self._record("load", start)

    def sleep(self) -> dict:
        """Release device memory but keep weights in host memory, for a fast wake."""
        start = time.perf_counter()
        self._sleep()
        self.info.state = SLEEPING
        return self._record("sleep", start)

    def wake(self) -> dict:
        """Bring a sleeping engine back onto the device."""
        start = time.perf_counter()
        self._wake()
        self.info.state = ACTIVE
        return self._record("wake", start)

    def unload(self) -> dict:
        """Free the model entirely."""
        start = time.perf_counter()
        if self.info.state != UNLOADED:
            self._unload()
        self.info.state = UNLOADED
        return self._record("unload", start)

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        """Generate every request, in order, in as few engine calls as the backend allows."""
        if self.info.state != ACTIVE:
            raise RuntimeError(f"engine for {self.model_path} is {self.info.state}, not active")
        if not self.steerable and any(r.steering is not None or r.analyze for r in requests):
            raise EngineError(
                f"expert {self.spec.name!r}: DSMoE steering needs engine=hf "
                f"(the {self.name} engine cannot reach a model's routers)"
            )
        return self._generate(requests) if requests else []

    def probe(self) -> dict:
        """Warm up and fingerprint the loaded weights: a short greedy reply to a fixed prompt.

        The first request after a wake is several times slower than later ones, so this also
        serves as the warm-up. The executor compares the text with the one recorded at first load
        to catch a wake that silently corrupted weights.
        """
        start = time.perf_counter()
        request = GenRequest.make(
            [{"role": "user", "content": PROBE_PROMPT}], Sampling(8, 0.0, 1.0, 0), "probe"
        )
        text = self.generate([request])[0].text
        return {"text": text, "seconds": time.perf_counter() - start}

    def weight_files(self) -> list[str]:
        """The model's weight files on local disk (empty when they are not there yet)."""
        root = self.model_path
        if not os.path.isdir(root):
            try:
                from huggingface_hub import snapshot_download

                root = snapshot_download(self.model_path, revision=self.spec.revision, local_files_only=True)
            except Exception:  # not in the local hub cache: nothing to read ahead
                return []
        return sorted(str(p) for p in Path(root).glob("*.safetensors"))

    def prefetch(self) -> int:
        """Ask the kernel to read the weight files into the page cache now; returns the bytes asked for.

        Called while another expert generates, so the next load reads from memory, not disk.
        """
        total = 0
        for path in self.weight_files():
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(f.fileno(), 0, size, os.POSIX_FADV_WILLNEED)
                total += size
        return total

    def _record(self, phase: str, start: float) -> dict:
        seconds = time.perf_counter() - start
        self.info.timings[phase] = seconds
        return {phase: seconds}

    def _load(self) -> None:
        raise NotImplementedError

    def _sleep(self) -> None:
        raise NotImplementedError(f"{self.name} engine cannot sleep here")

    def _wake(self) -> None:
        raise NotImplementedError(f"{self.name} engine cannot wake here")

    def _unload(self) -> None:
        raise NotImplementedError

    def _generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        raise NotImplementedError
