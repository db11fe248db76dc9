"""Router hooks on transformers MoE models, for DSMoE steering and routing statistics (hf engine).

transformers' MoE models (Qwen2/Qwen3-MoE, Mixtral, OLMoE, ...) route with a top-k router module
that computes ``logits -> softmax -> top-k`` and returns ``(logits, scores, indices)``. Steering
adds a bias to chosen experts' logits before the choice, so a forward hook recomputes the choice
from the biased logits with the router's own rule (its ``top_k`` and ``norm_topk_prob``).
Statistics record which experts each prompt token was routed to, and how much of the prompt's
gradient-x-input saliency those tokens carry, apart from the common tokens (stopwords, punctuation,
markup) that DSMoE's score counts on their own. "Layer" means the n-th MoE router of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from functools import partial

from skillmoe_ray.engines.base import Steering
from skillmoe_ray.errors import EngineError

# Words that carry no domain: with punctuation, always "common" tokens in the paper's score.
_STOPWORD_TEXT = (
    "a an the of to in on at for by with from into about and or but if then than as is are was were "
    "be been being it its this that these those which what who whom whose how why when where do does "
    "did not no nor so such can could would should may might will shall must there their they them "
    "he she his her we our you your i me my question options option answer end line letter correct"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def common_token_mask(tokens: Sequence[str]) -> list[bool]:
    """Which prompt tokens are common (stopwords, punctuation, markup): never domain-specific."""
    mask = []
    for token in tokens:
        word = token.lstrip("Ġ▁ Ċ").strip().lower()  # GPT-2 and SentencePiece word-start markers
        markup = word.startswith("<") and word.endswith(">")  # chat-template tokens such as <|user|>
        mask.append(markup or not any(c.isalnum() for c in word) or word in STOPWORDS)
    return mask


def find_routers(model) -> list:
    """The model's top-k routers, in layer order."""
    return [m for m in model.modules() if type(m).__name__.endswith("TopKRouter") and hasattr(m, "top_k")]


def _require_routers(model, what: str) -> list:
    routers = find_routers(model)
    if not routers:
        import transformers

        raise EngineError(
            f"{what} needs an MoE model with transformers' top-k router modules (transformers 5 "
            f"MoE models; this is {transformers.__version__}); {type(model).__name__} has none"
        )
    return routers


def _biased_choice(module, inputs, output, bias):
    """Forward hook: the router's top-k choice redone over logits + bias."""
    import torch

    logits = output[0] + bias.to(output[0].device, output[0].dtype)
    probs = torch.softmax(logits.float(), dim=-1)
    top, indices = torch.topk(probs, module.top_k, dim=-1)
    if getattr(module, "norm_topk_prob", True):  # Mixtral always renormalizes and has no flag
        top = top / top.sum(dim=-1, keepdim=True)
    return logits, top.to(output[1].dtype), indices


@contextmanager
def steered(model, steering: Steering | None):
    """Within the block, the routers of ``steering``'s layers favour its experts by its bias."""
    if steering is None:
        yield
        return
    import torch

    routers = _require_routers(model, "DSMoE steering")
    biases: dict[int, torch.Tensor] = {}
    for layer, expert in steering.experts:
        if layer >= len(routers) or expert >= routers[layer].num_experts:
            raise EngineError(
                f"steering names MoE layer {layer} expert {expert}, but the model has "
                f"{len(routers)} MoE layers of {routers[0].num_experts} experts"
            )
        biases.setdefault(layer, torch.zeros(routers[layer].num_experts))[expert] = steering.bias
    hooks = [
        routers[layer].register_forward_hook(partial(_biased_choice, bias=bias))
        for layer, bias in biases.items()
    ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def routing_statistics(model, input_ids, common: list[bool] | None = None) -> dict:
    """Per MoE layer and expert: the share of prompt tokens routed there, and of saliency through it.

    Saliency of a token is |gradient x input| of its embedding for the prompt's language-model loss
    (how much the token matters to the model's reading of the prompt), normalized over the tokens.
    ``input_ids`` is one unpadded prompt, shape (1, T). For DSMoE's own score, ``bins`` splits the routing
    of the tokens that are not ``common`` (stopwords, punctuation) by their saliency decile in the prompt,
    and ``common`` is the routing of the common ones, both as shares of the prompt's tokens.
    """
    import torch

    routers = _require_routers(model, "Routing statistics")
    chosen: list = [None] * len(routers)

    def record(layer, module, inputs, output):
        chosen[layer] = output[2].detach()

    hooks = [r.register_forward_hook(partial(record, i)) for i, r in enumerate(routers)]
    try:
        with torch.enable_grad():
            embeds = model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
            logits = model(inputs_embeds=embeds).logits[0, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits, input_ids[0, 1:], reduction="sum")
            loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    saliency = (embeds.grad[0] * embeds[0]).sum(-1).abs().float()
    saliency = saliency / saliency.sum().clamp_min(1e-12)
    n_tokens = input_ids.shape[1]
    deciles = (saliency.argsort().argsort() * 10 // n_tokens).clamp(max=9)  # 0: the least salient tenth
    is_common = torch.tensor(common if common is not None else [False] * n_tokens, dtype=torch.bool)
    counts, through, bins, commons = [], [], [], []
    for router, indices in zip(routers, chosen):
        onehot = (
            torch.zeros(n_tokens, router.num_experts, device=indices.device).scatter_(1, indices, 1.0).cpu()
        )
        counts.append((onehot.sum(0) / n_tokens).tolist())
        through.append((onehot * saliency.cpu()[:, None]).sum(0).tolist())
        by_decile = torch.nn.functional.one_hot(deciles.cpu()[~is_common], 10).float()
        bins.append((onehot[~is_common].T @ by_decile / n_tokens).tolist())
        commons.append((onehot[is_common].sum(0) / n_tokens).tolist())
    return {"counts": counts, "saliency": through, "bins": bins, "common": commons}
