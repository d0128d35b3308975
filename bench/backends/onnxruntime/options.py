"""ONNX Runtime's `backend_options` schema (unknown keys rejected) and its names in onnxruntime."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveInt


class OnnxRuntimeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    # default: CPUExecutionProvider on the CPU, CUDAExecutionProvider on CUDA; tensorrt: TensorrtExecutionProvider
    # first (CUDA for what it does not take), CUDA only (tensorrt.py)
    execution_provider: Literal["default", "tensorrt"] = "default"
    intra_op_num_threads: PositiveInt | None = None  # None: onnxruntime decides (one per physical core)
    io_binding: bool | None = None  # None: on with CUDA (device memory bound), off on the CPU (numpy, no copies)
    opset: PositiveInt | None = None  # None: torch.onnx's default (part of the cache key)


GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
