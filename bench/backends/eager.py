"""PyTorch eager: the model as built, in the requested dtype, under inference mode; int8 via torchao."""

from __future__ import annotations

from typing import Any

from bench.backends.base import Backend, Prepared

TASKS = ("text-generation", "feature-extraction")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dyn")


def prepare_torch(model: Any, precision: str) -> Prepared:
    """What eager and compile share: quantize when asked (verified), then count what is run."""
    from bench.backends.quantize import quantize_int8, weight_stats

    prepared = Prepared(runnable=model, details={
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "compute_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    })
    # Parameters of the architecture, counted before quantizing: quantizing a tied output projection
    # gives it its own int8 copy, which costs bytes (counted below) but is not a new parameter.
    prepared.parameters, prepared.weight_bytes = weight_stats(model)
    if precision.startswith("int8"):
        prepared.quantization, details, seconds = quantize_int8(model, precision)
        prepared.details.update(details)
        prepared.cold_metrics["quantize_s"] = seconds
        prepared.weight_bytes = prepared.quantization.weight_bytes_after
    return prepared


class EagerBackend(Backend):
    name = "eager"
    capabilities = {task: {"cpu": PRECISIONS, "cuda": PRECISIONS} for task in TASKS}

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        return prepare_torch(model, run.precision)
