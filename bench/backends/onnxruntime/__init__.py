"""ONNX Runtime: the model the worker built, exported to ONNX with optimum-onnx and run by optimum's
ORTModelForCausalLM (generation with a KV cache), ORTModelForFeatureExtraction or
ORTStableDiffusionPipeline (text to image: text encoder, UNet and VAE decoder are three ONNX graphs and
three sessions; diffusers' scheduler and pipeline loop run in Python, as with eager).

- Export: optimum's `onnx_export_from_model` on the built model itself, so the graph carries exactly the
  weights every other backend runs (seeded random weights included); fidelity checks it against fp32
  eager. The model is built in fp32, except fp16 on CUDA: optimum exports fp16 from a model that is
  already fp16 on the GPU (what its `--dtype fp16` does).
- Export cache: `cache_dir("onnx")/<key>` = `BENCH_CACHE_DIR/onnx/<key>` (default ~/.cache/aigc-bench). The key hashes the model
  config, the weights' identity (source, seed, and a sampled fingerprint of the tensors themselves),
  task, float dtype, export device type and the exporter/runtime versions, so a sweep exports each model
  once. An entry is written into a temporary directory and renamed into place: a killed run never leaves
  half an entry. `export_s` is the export's time, 0 on a cache hit (`details.export_cache` says which).
- int8 (CPU), on the linear layers (MatMul/Gemm with a constant weight):
    `int8-dyn` = onnxruntime.quantization.quantize_dynamic: int8 weights (per channel) and activations
                 quantized at run time (DynamicQuantizeLinear + MatMulInteger);
    `int8`     = weight-only MatMulNBits with bits=8 (MatMulNBitsQuantizer; activations stay fp32). On
                 the CPU, onnxruntime 1.31 has no fp32-activation kernel for 8 bits: it dequantizes each
                 weight on every call, which is slow. Its fast 8-bit path (accuracy_level=4) quantizes
                 the activations to int8, i.e. it is int8-dyn, so it is not used for `int8`.
  Quantized graphs are cached under their own key; each is verified afterwards by counting quantized
  and still-float linear layers and initializer bytes, and the run fails if nothing was quantized.
- Providers: CPUExecutionProvider on CPU; CUDAExecutionProvider with IO binding on CUDA. onnxruntime
  runs on the CPU, with only a warning, when it cannot use CUDA: the providers the session really has
  are checked after creating it, after the cold calls and after the measured phase, and a fallback
  fails the run. The session's own run-time fallback (retry on CPU after a CUDA error) is switched off.

Package layout: options.py (backend_options schema), export_cache.py (the export cache and its lock),
providers.py (provider checks), quantize.py (int8 graphs, verified), backend.py (the Backend).
"""

from bench.backends.onnxruntime.backend import RECIPES, SUPPORTED, WHY_UNSUPPORTED, OnnxRuntimeBackend, recipe
from bench.backends.onnxruntime.export_cache import (CACHE_FORMAT, META_FILE, cached, digest, export, export_key,
                                                     versions, weights_fingerprint)
from bench.backends.onnxruntime.options import GRAPH_OPTIMIZATION, OnnxRuntimeOptions
from bench.backends.onnxruntime.providers import (ProviderFallback, ProviderMonitor, check_providers, check_runtime,
                                                  requested_providers, runtime_build)
from bench.backends.onnxruntime.quantize import (QUANT_METHODS, gemm_to_matmul, initializer_bytes, linear_layers,
                                                 quantize, verify_quantization)

__all__ = ["CACHE_FORMAT", "GRAPH_OPTIMIZATION", "META_FILE", "QUANT_METHODS", "RECIPES", "SUPPORTED", "WHY_UNSUPPORTED",
           "OnnxRuntimeBackend", "OnnxRuntimeOptions", "ProviderFallback", "ProviderMonitor", "cached",
           "check_providers", "check_runtime", "digest", "export", "export_key", "gemm_to_matmul",
           "initializer_bytes", "linear_layers", "quantize", "recipe", "requested_providers", "runtime_build",
           "verify_quantization", "versions", "weights_fingerprint"]
