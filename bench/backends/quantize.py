"""int8 for the PyTorch backends (eager, compile) through torchao: `int8` weight-only, `int8-dyn` dynamic
activations + int8 weights. GPT-2's `Conv1D` layers become `nn.Linear` first; afterwards every targeted layer
must hold a torchao tensor, else the run fails (docs/backends.md)."""

from __future__ import annotations

import time
from typing import Any

from bench.results import Quantization

METHODS = {
    "int8": "Int8WeightOnlyConfig",
    "int8-dyn": "Int8DynamicActivationInt8WeightConfig",
}


class QuantizationNotApplied(RuntimeError):
    pass


def tensor_bytes(t: Any) -> int:
    """Bytes a tensor really occupies: a tensor subclass (torchao's int8 weight) is measured through the
    plain tensors it is made of (int8 data + scales + zero points), recursively."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None and type(t).__name__ not in ("Tensor", "Parameter"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def weight_stats(model: Any) -> tuple[int, int]:
    """(parameter count, weight bytes) of a torch module as it is now; a tied weight counts once."""
    seen: set[int] = set()
    count = size = 0
    for p in model.parameters():  # parameters() yields a shared (tied) parameter once
        if id(p) in seen:
            continue
        seen.add(id(p))
        count += p.numel()
        size += tensor_bytes(p.data if hasattr(p, "data") else p)
    return count, size


def weights_of(modules: dict[str, Any]) -> tuple[int, int]:
    """(parameter count, weight bytes) summed over a model's weight-holding modules (a pipeline's parts)."""
    stats = [weight_stats(m) for m in modules.values()]
    return sum(s[0] for s in stats), sum(s[1] for s in stats)


def conv1d_to_linear(model: Any) -> int:
    """Replace transformers' Conv1D (y = x @ W + b, W: [in, out]) by the equivalent nn.Linear
    (W^T stored [out, in]). Returns how many were replaced."""
    import torch
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape
                linear = torch.nn.Linear(
                    n_in, n_out, bias=child.bias is not None, dtype=child.weight.dtype, device=child.weight.device
                )
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def _is_quantized(weight: Any) -> bool:
    from torchao.utils import TorchAOBaseTensor

    return isinstance(weight, TorchAOBaseTensor)


def quantize_int8(model: Any, precision: str) -> tuple[Quantization, dict[str, Any], float]:
    """Quantize `model` in place; returns (verified quantization summary, details, seconds taken)."""
    import torch
    import torchao.quantization as tq

    config_name = METHODS[precision]
    _, bytes_before = weight_stats(model)
    t0 = time.perf_counter()
    converted = conv1d_to_linear(model)
    tq.quantize_(model, getattr(tq, config_name)())
    seconds = time.perf_counter() - t0

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    quantized = sum(_is_quantized(m.weight) for m in linears)
    left = len(linears) - quantized
    _, bytes_after = weight_stats(model)
    summary = Quantization(
        method=f"torchao {config_name}",
        quantized_layers=quantized,
        float_layers_left=left,
        weight_bytes_before=bytes_before,
        weight_bytes_after=bytes_after,
    )
    if quantized == 0:
        raise QuantizationNotApplied(
            f"{precision}: torchao {config_name} quantized none of {len(linears)} "
            "nn.Linear layers (nothing would be int8)"
        )
    if left:
        raise QuantizationNotApplied(
            f"{precision}: {left} of {len(linears)} nn.Linear layers are still floating point after torchao quantize_"
        )
    if bytes_after >= bytes_before:
        raise QuantizationNotApplied(f"{precision}: weight bytes did not shrink ({bytes_before} -> {bytes_after})")
    import torchao

    details = {"conv1d_converted_to_linear": converted, "torchao": torchao.__version__}
    return summary, details, seconds
