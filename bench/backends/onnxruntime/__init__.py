"""ONNX Runtime: the model the worker built, exported with PyTorch's own exporter (torch.onnx, dynamo) and run in
onnxruntime sessions behind objects that look like the torch model (a pipeline: one graph and session per
component). One module per concern:

- options.py       the `backend_options` schema
- graphs.py        the exporters: causal LM with an explicit KV cache, encoder, diffusion components
- export_cache.py  the export cache (`cache_dir("onnx")/<key>`) and its build-then-rename lock
- runtime.py       the runnables (a GenerationMixin causal LM, an encoder, the diffusers pipeline's components)
- providers.py     the session must run on the provider asked for; a fallback fails the run
- quantize.py      int8 (CPU) graphs, cached and verified
- backend.py       the Backend: which workloads (by class), precisions and devices; export → quantize → sessions
"""

from bench.backends.onnxruntime.backend import RECIPES, SUPPORTED, WHY_UNSUPPORTED, OnnxRuntimeBackend, recipe
from bench.backends.onnxruntime.export_cache import (
    CACHE_FORMAT,
    META_FILE,
    cached,
    digest,
    export,
    export_key,
    versions,
    weights_fingerprint,
)
from bench.backends.onnxruntime.options import GRAPH_OPTIMIZATION, OnnxRuntimeOptions
from bench.backends.onnxruntime.providers import (
    ProviderFallback,
    ProviderMonitor,
    check_providers,
    check_runtime,
    requested_providers,
    runtime_build,
)
from bench.backends.onnxruntime.quantize import (
    QUANT_METHODS,
    gemm_to_matmul,
    initializer_bytes,
    linear_layers,
    quantize,
    verify_quantization,
)

__all__ = [
    "CACHE_FORMAT",
    "GRAPH_OPTIMIZATION",
    "META_FILE",
    "QUANT_METHODS",
    "RECIPES",
    "SUPPORTED",
    "WHY_UNSUPPORTED",
    "OnnxRuntimeBackend",
    "OnnxRuntimeOptions",
    "ProviderFallback",
    "ProviderMonitor",
    "cached",
    "check_providers",
    "check_runtime",
    "digest",
    "export",
    "export_key",
    "gemm_to_matmul",
    "initializer_bytes",
    "linear_layers",
    "quantize",
    "recipe",
    "requested_providers",
    "runtime_build",
    "verify_quantization",
    "versions",
    "weights_fingerprint",
]
