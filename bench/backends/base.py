"""What a backend is: it turns a built torch model into something the workload can call.

Adding a backend = one module with a `Backend` subclass + one entry in `bench.backends.BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Prepared:
    """A runnable with the workload's calling convention (e.g. HF `generate`) and its cold costs."""

    runnable: Any
    cold_metrics: dict[str, float] = field(default_factory=dict)  # e.g. compile_s, export_s
    details: dict[str, Any] = field(default_factory=dict)
    uses_foreign_streams: bool = False  # True: time with a device-wide synchronize (SyncClock)


class Backend:
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Capability matrix: task -> device type -> precisions supported. Anything else is `unsupported`.
    capabilities: ClassVar[dict[str, dict[str, tuple[str, ...]]]] = {}

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = self.Options.model_validate(options or {})

    @classmethod
    def unsupported_reason(cls, task: str, precision: str, device_type: str) -> str | None:
        by_device = cls.capabilities.get(task)
        if by_device is None:
            return f"backend {cls.name} does not implement task {task}"
        precisions = by_device.get(device_type, ())
        if precision not in precisions:
            have = ", ".join(precisions) or "none"
            return f"backend {cls.name} on {device_type} does not support {precision} for {task} (supported: {have})"
        return None

    def load_dtype(self, precision: str):
        """The dtype the model is built in before `prepare` (quantizing backends build in fp32)."""
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        raise NotImplementedError
