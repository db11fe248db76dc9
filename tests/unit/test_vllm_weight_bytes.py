"""The vLLM engine's weight measure where vLLM's CPU backend repacked linear layers out of parameters."""

from __future__ import annotations

import torch

from skillmoe_ray.engines.vllm_engine import parameter_bytes


class RepackedLinear(torch.nn.Module):
    """What vLLM leaves of a linear layer on a oneDNN CPU: its sizes, a kernel handle, an empty weight."""

    def __init__(self, rows: int, columns: int):
        super().__init__()
        self.output_size_per_partition, self.input_size_per_partition = rows, columns
        self.cpu_linear = object()
        self.weight = torch.nn.Parameter(torch.empty(0, dtype=torch.bfloat16), requires_grad=False)


def test_a_repacked_linear_layer_counts_by_its_shape_and_tied_weights_count_once():
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 4, dtype=torch.bfloat16)
    model.head = torch.nn.Linear(4, 10, bias=False, dtype=torch.bfloat16)
    model.head.weight = model.embed.weight  # tied
    model.proj = RepackedLinear(8, 4)
    model.norm = torch.nn.LayerNorm(4, bias=False, dtype=torch.float32)
    assert parameter_bytes(model) == 10 * 4 * 2 + 8 * 4 * 2 + 4 * 4


def test_an_empty_weight_without_a_kernel_handle_counts_as_empty():
    model = torch.nn.Module()
    model.unused = torch.nn.Parameter(torch.empty(0), requires_grad=False)
    assert parameter_bytes(model) == 0
