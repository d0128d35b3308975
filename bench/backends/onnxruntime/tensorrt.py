"""ONNX Runtime's TensorRT execution provider (`backend_options: {onnxruntime: {execution_provider: tensorrt}}`).

- Where it can run: CUDA devices, fp32 and fp16 (int8 here means graphs quantized by onnxruntime's own
  quantizer, whose operators TensorRT would not run as such); an onnxruntime build that has the provider;
  TensorRT's libraries loadable (`missing()` says why not, and the point is recorded `unsupported`).
- Provider options: engines and the timing cache are kept under `cache_dir("tensorrt")/<key>`, the key made of
  the graph's own cache key (export or quantization, so the weights and versions), the precision, the
  onnxruntime and TensorRT versions and the GPU; fp16 engines for fp16 runs; explicit optimisation profiles
  from the workload's shapes (`profiles`), so dynamic inputs get one engine built at session creation instead
  of a rebuild whenever a new shape exceeds the range seen so far (a decode step's past grows every token).
The provider check (providers.py) fails the run when the session does not run TensorRT first.
"""

from __future__ import annotations

import ctypes
from typing import Any

from bench.backends.onnxruntime.export_cache import digest
from bench.cache import cache_dir

PROVIDER = "TensorrtExecutionProvider"
LIBRARY = "libnvinfer.so.10"  # onnxruntime-gpu 1.20-1.31 is built against TensorRT 10


def library_version() -> tuple[str | None, str | None]:
    """(TensorRT version, None) when its library loads, else (None, why)."""
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        return None, f"{LIBRARY} does not load ({exc})"
    try:
        v = int(lib.getInferLibVersion())
    except (AttributeError, ValueError) as exc:
        return None, f"{LIBRARY} loaded but has no getInferLibVersion ({exc})"
    # TensorRT 10 encodes major * 10000 + minor * 100 + patch
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}", None


def missing(device_type: str, precision: str, available: list[str]) -> str | None:
    """Why the TensorRT provider cannot run this point here; None: it can."""
    if device_type != "cuda":
        return "execution_provider tensorrt runs on CUDA devices only"
    if precision not in ("fp32", "fp16"):
        return (
            f"execution_provider tensorrt runs fp32 and fp16: {precision} graphs are quantized with onnxruntime's "
            "own operators, which TensorRT does not run as such"
        )
    if PROVIDER not in available:
        return f"{PROVIDER} is not in this onnxruntime build (available: {', '.join(available)})"
    version, why = library_version()
    if version is None:
        return (
            f"TensorRT's libraries are absent: {why}; install TensorRT 10 (pip install tensorrt) with its "
            "libraries on LD_LIBRARY_PATH"
        )
    return None


def _shape(name: str, dims: tuple[int, ...]) -> str:
    return f"{name}:{'x'.join(str(d) for d in dims)}"


def profiles(kind: str, graph: str, meta: dict[str, Any], run: Any) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes for one graph of `kind`, from the run's batch and workload."""
    batch, w = run.batch_size, run.workload
    shapes: dict[str, list[tuple[tuple[int, ...], ...]]] = {}  # name -> (min, opt, max)
    if kind == "causal-lm-with-past":
        prompt, new = int(w["prompt_tokens"]), int(w["new_tokens"])
        longest = prompt + new
        kv = (meta["kv_heads"], meta["head_dim"])
        shapes["input_ids"] = [(batch, 1), (batch, 1), (batch, prompt)]
        shapes["attention_mask"] = [(batch, 1), (batch, longest), (batch, longest)]
        for i in range(meta["layers"]):  # the prefill has no past; the last step's is the longest
            for part in ("key", "value"):
                shapes[f"past.{i}.{part}"] = [(batch, *kv[:1], past, kv[1]) for past in (0, longest, longest)]
    elif kind == "encoder":
        length = int(w["sequence_length"])
        for name in meta.get("inputs", ["input_ids", "attention_mask"]):
            shapes[name] = [(batch, 1), (batch, length), (batch, length)]
    elif kind == "stable-diffusion":
        rows = 2 * batch if float(w.get("guidance_scale", 1.0)) > 1 else batch  # classifier-free guidance
        part = graph.split("/")[0]
        lh, lw = meta["latent"]
        if part == "text_encoder":
            shapes["input_ids"] = [(batch, meta["tokens"])] * 3
        elif part == "unet":
            shapes["sample"] = [(rows, meta["latent_channels"], lh, lw)] * 3
            shapes["encoder_hidden_states"] = [(rows, meta["tokens"], meta["text_hidden"])] * 3
        else:
            shapes["latent_sample"] = [(batch, meta["latent_channels"], lh, lw)] * 3
    return {
        f"trt_profile_{which}_shapes": ",".join(_shape(n, s[k]) for n, s in shapes.items())
        for k, which in enumerate(("min", "opt", "max"))
        if shapes
    }


def provider_options(
    device: Any, precision: str, graph_key: str, graph: str, kind: str, meta: dict[str, Any], run: Any, build: str
) -> tuple[dict[str, str], str]:
    """(TensorRT provider options, the engine cache directory) for one graph."""
    import onnxruntime as ort
    import torch

    version, _ = library_version()
    gpu = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "unknown"
    key = digest(
        {"graph": graph_key, "file": graph, "precision": precision, "onnxruntime": ort.__version__}
        | {"tensorrt": version, "gpu": gpu}
    )
    engines = cache_dir("tensorrt") / key
    engines.mkdir(parents=True, exist_ok=True)
    options = {
        "device_id": str(device.index or 0),
        "trt_fp16_enable": "1" if precision == "fp16" else "0",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(engines),
        **profiles(kind, graph, meta, run),
    }
    return options, str(engines)
