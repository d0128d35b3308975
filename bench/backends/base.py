"""What a backend is: it turns a built torch model into something the workload can call.

Adding a backend = one module with a `Backend` subclass + one entry in `bench.backends.BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from bench.precisions import PRECISIONS
from bench.results import ColdCost


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Monitor:
    """Backend hooks around the worker's phases. The default watches nothing; torch.compile's counts
    compilations (lazy: they happen in the first calls) and catches recompiles in the measured phase."""

    def cold_metrics(self) -> dict[str, float]:
        """Cold costs known only after the first call and warm-up (e.g. compile_s), each declared by the backend."""
        return {}

    def start_measured(self) -> None:
        pass

    def end_measured(self) -> tuple[dict[str, Any], list[str]]:
        """(details, invalid reasons) about what happened during the measured phase."""
        return {}, []


@dataclass
class Prepared:
    """A runnable with the workload's calling convention (HF `generate` / forward) and what it cost."""

    runnable: Any
    cold_metrics: dict[str, float] = field(default_factory=dict)  # each one declared in Backend.cold_costs
    details: dict[str, Any] = field(default_factory=dict)
    uses_foreign_streams: bool = False  # True: time with a device-wide synchronize (SyncClock)
    parameters: int | None = None  # of the model as run
    weight_bytes: int | None = None  # of its weights as run (after quantization)
    quantization: Any = None  # bench.results.Quantization when the backend quantized
    monitor: Monitor = field(default_factory=Monitor)


class Backend:
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Capability matrix: workload class -> device type -> precisions supported; a key covers its subclasses
    # (`Workload` itself: every workload). Anything else is `unsupported`.
    capabilities: ClassVar[dict[type, dict[str, tuple[str, ...]]]] = {}
    # The cold costs this backend records (Prepared.cold_metrics, Monitor.cold_metrics); a record with any
    # other key fails validation (bench.results.Record).
    cold_costs: ClassVar[tuple[ColdCost, ...]] = ()

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = self.Options.model_validate(options or {})

    @classmethod
    def capability(cls, task: str) -> dict[str, tuple[str, ...]] | None:
        """Device type -> precisions for the workload registered as `task`; None: not implemented."""
        from bench.workloads import WORKLOADS

        workload = WORKLOADS.get(task)
        if workload is None:
            return None
        return next((cls.capabilities[k] for k in workload.__mro__ if k in cls.capabilities), None)

    @classmethod
    def unsupported_reason(
        cls, task: str, precision: str, device_type: str, options: dict[str, Any] | None = None
    ) -> str | None:
        """Why this backend cannot run the point; `options` (its backend_options) may narrow what it runs."""
        by_device = cls.capability(task)
        if by_device is None:
            return f"backend {cls.name} does not implement task {task}"
        precisions = by_device.get(device_type, ())
        if precision not in precisions:
            have = ", ".join(precisions) or "none"
            return f"backend {cls.name} on {device_type} does not support {precision} for {task} (supported: {have})"
        return None

    def load_dtype(self, precision: str, device_type: str):
        """The dtype the model is built in before `prepare`. int8 keeps activations in floating point:
        fp32 on the CPU, bf16 on CUDA (the usual recipe for int8 weights on GPUs); records say which."""
        import torch

        if precision.startswith("int8"):
            return torch.bfloat16 if device_type == "cuda" else torch.float32
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        assert set(dtypes) | {p for p in PRECISIONS if p.startswith("int8")} == set(PRECISIONS)
        return dtypes[precision]

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        raise NotImplementedError
