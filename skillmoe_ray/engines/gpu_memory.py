"""Memory rules of vLLM experts sharing one GPU and one host (DESIGN section 4, "memory is accounted").

Pure functions, shared by the vLLM engine (at load, on CUDA), the scheduler's footprints (the executor
and ``mode=plan`` alike) and the host-RAM budget:

- a sleeping expert holds its weights in pinned host memory, which PyTorch's pinned-memory cache rounds
  up to powers of two: the budget charges ``PINNED_MARGIN`` times the weight bytes;
- each engine's KV cache is sized from what its chunk of requests needs (``kv_cache_memory_bytes``, the
  pool's engine kwargs or :func:`kv_cache_bytes`' default rule), not from a fixed share of the GPU;
- its ``gpu_memory_utilization`` is computed at load from the free memory the device reports
  (:func:`utilization_share`): vLLM refuses to start unless that share of the total is free, and a
  sleeper keeps its CUDA context and graph pools (``SLEEPER_RESIDUE_BYTES``) on the device.

The byte figures below are defaults, not measurements: ``jobs/gpu_bench.sh vllm`` measures them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from skillmoe_ray.errors import EngineError

GIB = 2**30
# Pinned host bytes per weight byte of a sleeper: the caching host allocator rounds each block up to a power
# of two (about 1.3x for 7B-model shapes, jobs/gpu_bench.sh's schedule notes)
PINNED_MARGIN = 1.3
# Device bytes a sleeping (or merely started) engine keeps: CUDA context, graph pools, buffers.
# The reading of vLLM 0.32 says 0.8-1.5 GiB; a default until the GPU check measures it
SLEEPER_RESIDUE_BYTES = 1.5 * GIB
# Device bytes an engine needs beyond weights and KV cache (activations, sampler, CUDA graphs); a default
WORKSPACE_BYTES = 2 * GIB
# Prompt tokens assumed per request when sizing a KV cache (the reply's max_tokens comes on top)
PROMPT_TOKENS = 1024
# Most of the device an engine may be given (vLLM's own default is 0.9)
MAX_SHARE = 0.92
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "auto": 2, "fp8": 1}


def sleeping_host_bytes(weight_bytes: float, device: str = "cuda") -> float:
    """Host RAM a sleeping expert with ``weight_bytes`` of weights holds: pinned backups with the margin on a
    GPU; on the CPU a sleeping model's weights stay as they are (pageable, no rounding)."""
    return weight_bytes * (PINNED_MARGIN if device.startswith("cuda") else 1.0)


def kv_bytes_per_token(model_config: dict, dtype: str) -> int:
    """KV cache bytes of one token: keys and values of every layer (from a Hugging Face config.json)."""
    text = model_config.get("text_config") or model_config
    heads = text["num_attention_heads"]
    head_dim = text.get("head_dim") or text["hidden_size"] // heads
    kv_heads = text.get("num_key_value_heads") or heads
    return 2 * text["num_hidden_layers"] * kv_heads * head_dim * DTYPE_BYTES.get(dtype, 2)


def kv_tokens(max_num_seqs: int, max_model_len: int, max_tokens: int) -> int:
    """Tokens the KV cache must hold: every sequence of a batch at its prompt plus reply, and at least one
    full-length request (vLLM refuses to start with less)."""
    per_request = min(max_model_len, max_tokens + PROMPT_TOKENS)
    return max(max_model_len, max_num_seqs * per_request)


def model_config_of(path: str, revision: str | None = None) -> dict | None:
    """A model's config.json from its directory or the local hub cache (nothing is downloaded), or None:
    then the default rule cannot apply."""
    config = Path(path).expanduser() / "config.json"
    if not config.is_file() and not Path(path).expanduser().is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "config.json", revision=revision)
        except Exception:  # not a valid hub id either
            cached = None
        config = Path(cached) if isinstance(cached, str) else config
    return json.loads(config.read_text()) if config.is_file() else None


def kv_cache_bytes(config: dict | None, dtype: str, max_num_seqs: int, max_model_len: int, max_tokens: int,
                   kwargs: dict) -> int | None:
    """An engine's KV cache in bytes: ``kv_cache_memory_bytes`` from its engine kwargs, else the default rule
    (:func:`kv_tokens` x :func:`kv_bytes_per_token`) from the model's ``config``; None when neither does."""
    if kwargs.get("kv_cache_memory_bytes"):
        return int(kwargs["kv_cache_memory_bytes"])
    if config is None:
        return None
    return kv_tokens(max_num_seqs, max_model_len, max_tokens) * kv_bytes_per_token(config, dtype)


def engine_need(weight_bytes: float, kv_bytes: float) -> float:
    """Device bytes one active engine needs: weights, KV cache, workspace and its own residue."""
    return weight_bytes + kv_bytes + WORKSPACE_BYTES + SLEEPER_RESIDUE_BYTES


def utilization_share(free: float, total: float, need: float, cap: float = MAX_SHARE) -> float:
    """The ``gpu_memory_utilization`` for an engine needing ``need`` bytes with ``free`` of ``total`` free.

    vLLM starts only when share x total bytes are free, whatever other processes (sleepers' residue, other
    engines) hold. The share is the need rounded up to a thousandth, never above what is free nor ``cap``;
    an engine that does not fit is refused with the figures, before vLLM would fail less clearly.
    """
    available = min(free, cap * total)
    if need > available:
        raise EngineError(f"a vLLM engine needs {need / GIB:.1f} GiB but {free / GIB:.1f} of "
                          f"{total / GIB:.1f} GiB are free (others' residue included): lower its "
                          f"kv_cache_memory_bytes or max_model_len, or unload sleeping experts")
    return min(math.ceil(need / total * 1000) / 1000, free_share(available, total))


def free_share(free: float, total: float) -> float:
    """The largest share of the device vLLM's start check accepts now (free over total, rounded down)."""
    return math.floor(free / total * 1000) / 1000


def capped_max_num_seqs(configured: int, chunk_requests: int) -> int:
    """Sequences decoded together: never more than the largest batch an expert gets (``chunk_requests``;
    0 means whole groups, so the configured value stands). Larger values only capture unused graphs."""
    return min(configured, chunk_requests) if chunk_requests > 0 else configured


def residue_extrapolated(residue_bytes: float, experts: int, total: float) -> dict:
    """What ``experts`` sleepers' residue would take of a device of ``total`` bytes (the GPU check's row)."""
    taken = residue_bytes * experts
    return {"experts": experts, "bytes": taken, "share": taken / total if total else None}
