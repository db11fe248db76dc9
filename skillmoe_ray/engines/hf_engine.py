"""transformers engine: ``generate`` on CPU or GPU, with per-request seeded sampling.

Used where vLLM is unavailable (a GPU machine without it), and for DSMoE steering, which needs
hooks on the model's routers (:mod:`skillmoe_ray.engines.moe_hooks`): steered requests are
batched by their steering, and analyze requests return routing statistics instead of text. Sleeping moves the
weights to pinned host memory and waking moves
them back; on the CPU the weights already live in host memory, so both are no-ops.

Sampling is done by :class:`SeededSampler`, a logits processor that draws each row's next token
from that row's own ``torch.Generator``; ``generate`` then runs greedily over the one-hot result.
That keeps every request's output independent of its batch, like vLLM's per-request seeds.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os

from skillmoe_ray.engines.base import Engine, GenOutput, GenRequest
from skillmoe_ray.engines.moe_hooks import common_token_mask, routing_statistics, steered
from skillmoe_ray.errors import EngineError

log = logging.getLogger(__name__)

# from_pretrained arguments the engine sets itself -> the config key that sets them (not engine.kwargs)
NAMED_ARGS = {
    "pretrained_model_name_or_path": "pool.models.<name>.path",
    "revision": "pool.models.<name>.revision",
    "trust_remote_code": "pool.models.<name>.trust_remote_code",
    "dtype": "engine.dtype or pool.models.<name>.dtype",
    "torch_dtype": "engine.dtype or pool.models.<name>.dtype",
    "attn_implementation": "engine.options.attn_implementation",
}


class SeededSampler:
    """Logits processor: temperature + top-p sampling with one generator per batch row."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids, scores):
        import torch

        if self.temperature <= 0:
            return scores
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > self.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        picks = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)]
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(1, torch.stack(picks), 0.0)
        return forced


class HFEngine(Engine):
    """One transformers causal LM for one expert model."""

    name = "hf"
    steerable = True
    OPTIONS = {
        # "auto" picks cuda when available, else cpu
        "device": "auto",
        # requests generated together in one generate() call
        "batch_size": 16,
        # attention implementation passed to from_pretrained (null: transformers' default)
        "attn_implementation": None,
        # keep sleeping weights in pinned host memory (faster wake on CUDA)
        "pin_memory": True,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = None
        self.tokenizer = None
        self.device = None

    @classmethod
    def sleeps_with(cls, options: dict) -> bool:
        return options.get("device", "auto") != "cpu"

    @classmethod
    def check_kwargs(cls, kwargs: dict, where: str) -> None:
        """Any ``from_pretrained`` argument but those the engine sets. transformers itself checks the
        rest at load (a config attribute is a valid argument too, so no fixed list exists)."""
        cls.refuse_named(kwargs, where, NAMED_ARGS)

    @property
    def can_sleep(self) -> bool:
        """On a GPU a sleep moves the weights to host RAM and frees the device. On the CPU they are in host
        RAM already, so a sleep would free nothing: there an evicted model unloads (the residency budget,
        which counts host RAM on the CPU, then holds) and its next use loads it again in the same process."""
        return self.device is None or not self.device.startswith("cpu")

    def prepare(self) -> None:
        """Import what a load needs: torch, transformers' auto classes and, for a model on local disk, its
        architecture's module. On a small CPU that is most of a first load (seconds to half a minute), paid
        here when the expert's process starts (the serving warm-up starts every model) instead of at the
        model's first use; a problem is left for the load to report."""
        import torch  # noqa: F401
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        if os.path.isfile(os.path.join(self.model_path, "config.json")):
            try:
                remote = self.spec.trust_remote_code
                config = AutoConfig.from_pretrained(self.model_path, trust_remote_code=remote)
                MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # imports the architecture's modeling module
            except Exception as exc:  # the load reports it, with the model's name
                log.debug("preparing %s: %s", self.spec.name, exc)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.options["device"]
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        spec = self.spec
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.model_path,
                revision=spec.revision,
                trust_remote_code=spec.trust_remote_code,
                padding_side="left",
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                self.model_path,
                revision=spec.revision,
                trust_remote_code=spec.trust_remote_code,
                dtype=getattr(torch, self.dtype),
                attn_implementation=self.options["attn_implementation"],
                **{**self._placement(), **self.kwargs},
            ).to(self.device)
        except Exception as exc:
            raise EngineError(
                f"transformers could not load expert {spec.name!r} from {spec.path!r}: {exc}"
            ) from exc
        self.model.eval()
        self.model.requires_grad_(False)  # inference only; routing saliency differentiates the inputs alone
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.info.device = self.device
        self.info.weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())

    def _placement(self) -> dict:
        """Load straight onto the GPU where accelerate is installed, skipping a full copy in host RAM."""
        if not self.device.startswith("cuda"):
            return {}
        try:
            import accelerate  # noqa: F401
        except ImportError:
            return {}
        return {"device_map": self.device}

    def _generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        outputs: list[GenOutput | None] = [None] * len(requests)
        for i, request in enumerate(requests):
            if request.analyze:
                outputs[i] = self._analyze(request)
        order = sorted(
            (i for i, r in enumerate(requests) if not r.analyze), key=lambda i: self._batch_key(requests[i])
        )
        for _, group in itertools.groupby(order, key=lambda i: self._batch_key(requests[i])):
            group = list(group)
            for start in range(0, len(group), self.options["batch_size"]):
                batch = group[start : start + self.options["batch_size"]]
                for i, out in zip(batch, self._generate_batch([requests[i] for i in batch])):
                    outputs[i] = out
        return outputs

    @staticmethod
    def _batch_key(request: GenRequest) -> tuple:
        """Requests batched together share sampling settings and steering (one set of router hooks)."""
        s, steer = request.sampling, request.steering
        return (s.max_tokens, s.temperature, s.top_p, () if steer is None else (steer.bias, steer.experts))

    def _analyze(self, request: GenRequest) -> GenOutput:
        """The prompt's routing statistics (under the request's steering, if any); no text."""
        prompt = self.tokenizer.apply_chat_template(
            request.chat(), tokenize=False, add_generation_prompt=True
        )
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(
            self.device
        )
        common = common_token_mask(self.tokenizer.convert_ids_to_tokens(ids[0].tolist()))
        with steered(self.model, request.steering):
            stats = routing_statistics(self.model, ids, common)
        return GenOutput(text="", prompt_tokens=ids.shape[1], finish_reason="analyze", router=stats)

    def _room(self, prompt_lengths: list[int], max_tokens: int) -> int:
        """New tokens the batch may generate within ``max_model_len``, as vLLM applies it: a prompt that fills
        the context is refused (ValueError,
                                a bad input: not retried); a reply stops where the context ends."""
        longest = max(prompt_lengths)
        if longest >= self.spec.max_model_len:
            raise ValueError(
                f"a prompt of {longest} tokens does not fit model {self.spec.name!r}: "
                f"pool.models.{self.spec.name}.max_model_len={self.spec.max_model_len}"
            )
        return min(max_tokens, self.spec.max_model_len - longest)

    def _generate_batch(self, requests: list[GenRequest]) -> list[GenOutput]:
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(r.chat(), tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        # The chat template already holds any BOS token: adding special tokens again would double it.
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        sampling = requests[0].sampling
        max_new_tokens = self._room(enc["attention_mask"].sum(dim=1).tolist(), sampling.max_tokens)
        sampler = SeededSampler(
            [r.sampling.seed for r in requests], sampling.temperature, sampling.top_p, self.device
        )
        with torch.no_grad(), steered(self.model, requests[0].steering):
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                logits_processor=[sampler],
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        stop_ids = self._stop_ids()
        results = []
        for row, mask in zip(new_tokens.tolist(), enc["attention_mask"]):
            cut = next((j for j, t in enumerate(row) if t in stop_ids), None)
            ids = row if cut is None else row[:cut]
            results.append(
                GenOutput(
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    prompt_tokens=int(mask.sum()),
                    output_tokens=len(ids),
                    finish_reason="length" if cut is None else "stop",
                )
            )
        return results

    def _stop_ids(self) -> set[int]:
        """Token ids that end a reply: the generation config's EOS (an id or a list) and the tokenizer's."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _sleep(self) -> None:
        if self.device == "cpu":
            return
        import torch

        # Copy each tensor straight into a pinned host buffer: one device-to-host copy, no staging copy.
        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            host = torch.empty(
                tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=self.options["pin_memory"]
            )
            host.copy_(tensor.data, non_blocking=self.options["pin_memory"])
            tensor.data = host
        torch.cuda.synchronize()
        torch.cuda.empty_cache()

    def _wake(self) -> None:
        if self.device == "cpu":
            return
        import torch

        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            tensor.data = tensor.data.to(self.device, non_blocking=True)
        torch.cuda.synchronize()

    def _unload(self) -> None:
        self.model = None
        self.tokenizer = None
        gc.collect()
        if self.device and self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
