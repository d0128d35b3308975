"""PyTorch eager: the model as built, in the requested dtype, under inference mode; int8 via torchao."""

from __future__ import annotations

from typing import Any

from bench.backends.base import Backend, Prepared
from bench.precisions import PRECISIONS
from bench.results import ColdCost
from bench.workloads.base import Workload

QUANTIZE = ColdCost("quantize_s", "int8: quantizing the weights (torchao)")


def prepare_torch(model: Any, run: Any) -> Prepared:
    """What eager and compile share: quantize when asked (verified), then count what is run."""
    from bench.backends.quantize import quantize_int8, weights_of
    from bench.workloads import WORKLOADS

    workload = WORKLOADS[run.task]
    target = workload.optimized_module(model)
    prepared = Prepared(
        runnable=model,
        details={
            "attn_implementation": getattr(getattr(target, "config", None), "_attn_implementation", None),
            "compute_dtype": str(next(target.parameters()).dtype).removeprefix("torch."),
        },
    )
    if target is not model:
        prepared.details["optimized_module"] = type(target).__name__
    # Parameters of the architecture, counted before quantizing: quantizing a tied output projection
    # gives it its own int8 copy, which costs bytes (counted below) but is not a new parameter.
    modules = workload.weight_modules(model)
    prepared.parameters, prepared.weight_bytes = weights_of(modules)
    if run.precision.startswith("int8"):
        prepared.quantization, details, seconds = quantize_int8(target, run.precision)
        prepared.details.update(details)
        prepared.cold_metrics["quantize_s"] = seconds
        prepared.weight_bytes = weights_of(modules)[1]
    return prepared


class EagerBackend(Backend):
    name = "eager"
    capabilities = {Workload: {"cpu": PRECISIONS, "cuda": PRECISIONS}}  # any workload's torch model
    cold_costs = (QUANTIZE,)

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        return prepare_torch(model, run)
