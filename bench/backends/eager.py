"""PyTorch eager: the model as built, in the requested dtype, under inference mode."""

from __future__ import annotations

from typing import Any

from bench.backends.base import Backend, Prepared

FLOAT = ("fp32", "fp16", "bf16")


class EagerBackend(Backend):
    name = "eager"
    capabilities = {"text-generation": {"cpu": FLOAT, "cuda": FLOAT}}

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        return Prepared(runnable=model, details={
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        })
