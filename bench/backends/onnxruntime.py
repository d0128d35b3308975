"""ONNX Runtime: the model the worker built, exported to ONNX with optimum-onnx and run by optimum's
ORTModelForCausalLM (generation with a KV cache), ORTModelForFeatureExtraction or
ORTStableDiffusionPipeline (text to image: text encoder, UNet and VAE decoder are three ONNX graphs and
three sessions; diffusers' scheduler and pipeline loop run in Python, as with eager).

- Export: optimum's `onnx_export_from_model` on the built model itself, so the graph carries exactly the
  weights every other backend runs (seeded random weights included); fidelity checks it against fp32
  eager. The model is built in fp32, except fp16 on CUDA: optimum exports fp16 from a model that is
  already fp16 on the GPU (what its `--dtype fp16` does).
- Export cache: `BENCH_CACHE_DIR/onnx/<key>` (default ~/.cache/aigc-bench). The key hashes the model
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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt

from bench.backends.base import Backend, Monitor, Prepared
from bench.backends.compile import cache_root
from bench.backends.quantize import QuantizationNotApplied, weights_of
from bench.results import Quantization

# task -> (optimum export task, optimum ORTModel class)
TASKS = {
    "text-generation": ("text-generation-with-past", "ORTModelForCausalLM"),
    "feature-extraction": ("feature-extraction", "ORTModelForFeatureExtraction"),
    "text-to-image": ("text-to-image", "ORTStableDiffusionPipeline"),
}
PRECISIONS = {"cpu": ("fp32", "int8", "int8-dyn"), "cuda": ("fp32", "fp16")}
# The graphs a run's sessions execute, per task (a pipeline's VAE encoder is exported but unused).
GRAPHS = {"text-to-image": ("text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx")}
TASK_PRECISIONS = {"text-to-image": {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}}
# Why the other points are unsupported (appended to the `unsupported` record's reason).
WHY_UNSUPPORTED = {
    ("cpu", "fp16"): "onnxruntime's CPUExecutionProvider implements few operators in fp16, and optimum "
                     "exports fp16 only on a CUDA device",
    ("cpu", "bf16"): "onnxruntime's CPUExecutionProvider implements few operators in bfloat16 (optimum "
                     "warns that such a session likely fails to load)",
    ("cuda", "bf16"): "onnxruntime's CUDAExecutionProvider implements few operators in bfloat16 (optimum "
                      "warns that such a session likely fails to load)",
    ("cuda", "int8-dyn"): "onnxruntime's dynamic quantization operators (DynamicQuantizeLinear, "
                          "MatMulInteger) are CPU kernels: on CUDA those nodes would run on the CPU "
                          "without an error",
    ("cuda", "int8"): "not enabled: MatMulNBits has 8-bit CUDA kernels (onnxruntime >= 1.22), but "
                      "quantizing the fp16 graph has not been run on a GPU by this project yet",
}
WHY_UNSUPPORTED_TASK = {
    ("text-to-image", "int8"): "not enabled for text to image: quantizing the exported UNet graph (its "
                               "convolutions and attention MatMuls) has not been built and verified by this "
                               "project",
    ("text-to-image", "int8-dyn"): "not enabled for text to image: dynamic quantization of the exported UNet "
                                   "graph has not been built and verified by this project",
}
CACHE_FORMAT = 1  # bump when what this module writes into a cache entry changes
META_FILE = "bench-onnx.json"  # written last into an entry: its presence marks the entry complete
VERSIONED = ("optimum-onnx", "optimum", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "torch",
             "transformers")


class OnnxRuntimeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    intra_op_num_threads: PositiveInt | None = None  # None: onnxruntime decides (one per physical core)
    io_binding: bool | None = None  # None: on with CUDA, off on the CPU (optimum's default)
    opset: PositiveInt | None = None  # None: optimum's default for the architecture (part of the cache key)


class ProviderFallback(RuntimeError):
    pass


def versions() -> dict[str, str | None]:
    found = {}
    for dist in VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


# --- providers --------------------------------------------------------------------------------------

def requested_providers(device: Any) -> list[tuple[str, dict[str, Any]]]:
    if device.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    return [("CPUExecutionProvider", {})]


def runtime_build() -> str:
    import onnxruntime as ort

    dists = [d for d, v in versions().items() if d.startswith("onnxruntime") and v]
    return (f"onnxruntime {ort.__version__} from package {' + '.join(dists) or 'unknown'}, "
            f"device {ort.get_device()}, available providers: {', '.join(ort.get_available_providers())}")


def check_runtime(device: Any, available: list[str], build: str) -> None:
    """Refuse CUDA before exporting anything when the installed onnxruntime is a CPU build."""
    if device.type == "cuda" and "CUDAExecutionProvider" not in available:
        raise ProviderFallback(f"CUDAExecutionProvider is not in this onnxruntime build ({build}); install "
                               "onnxruntime-gpu instead of onnxruntime (make install GPU=1)")


def check_providers(requested: list[tuple[str, dict[str, Any]]], active: list[str],
                    active_options: dict[str, dict[str, Any]], build: str) -> None:
    """The session must run on the provider asked for (first in its list) with the options asked for;
    onnxruntime adds CPUExecutionProvider after it for nodes the first cannot run, which is expected."""
    wanted = requested[0][0]
    if not active or active[0] != wanted:
        raise ProviderFallback(f"onnxruntime fell back to {', '.join(active) or 'nothing'}: {wanted} "
                               f"unavailable ({build})")
    for key, value in requested[0][1].items():
        got = active_options.get(wanted, {}).get(key)
        if str(got) != str(value):
            raise ProviderFallback(f"onnxruntime runs {wanted} with {key}={got}, not {value} as requested")


class ProviderMonitor(Monitor):
    """Re-checks the sessions' providers: onnxruntime may switch a session to the CPU after an error."""

    def __init__(self, sessions: list[Any], requested: list[tuple[str, dict[str, Any]]], build: str):
        self.sessions, self.requested, self.build = sessions, requested, build

    def _check(self) -> None:
        for session in self.sessions:
            check_providers(self.requested, session.get_providers(), session.get_provider_options(), self.build)

    def cold_metrics(self) -> dict[str, float]:
        self._check()
        return {}

    def end_measured(self) -> tuple[dict[str, Any], list[str]]:
        self._check()
        return {}, []


# --- export cache -----------------------------------------------------------------------------------

def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def torch_modules(model: Any, task: str) -> dict[str, Any]:
    """The torch modules holding the weights: the model, or a pipeline's components."""
    from bench.workloads import WORKLOADS

    return WORKLOADS[task].weight_modules(model)


def weights_fingerprint(modules: dict[str, Any], samples: int = 1024) -> str:
    """Name, shape, dtype and up to `samples` evenly spaced values of every tensor: cheap even for 7B
    models, and it changes when the weights do (another seed, another initialiser, other files)."""
    h = hashlib.sha256()
    tensors = ((f"{part}.{name}", t) for part, m in modules.items() for name, t in m.state_dict().items())
    for name, tensor in tensors:
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples)
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(flat[::step][:samples].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def export_key(model: Any, run: Any, device: Any, opset: int | None) -> dict[str, Any]:
    """What the exported files depend on (session options are not part of it: they change no file)."""
    modules = torch_modules(model, run.task)
    weights = {"kind": run.weights, "source": run.model_kind,
               "model": run.model if run.model_kind == "bundled" else run.model_location,
               "seed": run.measure.seed if run.weights == "random" else None,
               "fingerprint": weights_fingerprint(modules)}
    config = {part: dict(m.config.to_dict() if hasattr(m.config, "to_dict") else m.config)
              for part, m in modules.items()}
    first = next(p for m in modules.values() for p in m.parameters())
    return {"format": CACHE_FORMAT, "task": TASKS[run.task][0], "config": config,
            "weights": weights, "dtype": str(first.dtype), "export_device": device.type,
            "opset": opset, "versions": versions()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cached(entry: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """("hit" | "miss", metadata) for cache entry `entry`; on a miss, `build(tmp_dir)` writes the files
    into a temporary sibling directory, which is renamed to `entry` only once complete."""
    meta_path = entry / META_FILE
    if meta_path.is_file():
        return "hit", json.loads(meta_path.read_text())
    entry.parent.mkdir(parents=True, exist_ok=True)
    for stale in entry.parent.glob(f".tmp-{entry.name}-*"):  # left by a killed run
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-{os.getpid()}-", dir=entry.parent))
    try:
        meta = build(tmp)
        tmp.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        if entry.exists() and not meta_path.is_file():
            shutil.rmtree(entry)  # an entry without its metadata file is not one of ours, or incomplete
        try:
            os.rename(tmp, entry)
        except OSError:
            if not meta_path.is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another run published the same entry first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return "miss", meta


def export(model: Any, run: Any, device: Any, opset: int | None) -> tuple[Path, str, dict[str, Any]]:
    """(directory with the exported model, "hit" | "miss", its metadata)."""
    from optimum.exporters.onnx import onnx_export_from_model

    key_inputs = export_key(model, run, device, opset)
    key = digest(key_inputs)

    def build(out: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        onnx_export_from_model(model, out, task=key_inputs["task"], opset=opset, device=device.type,
                               do_validation=False)  # fidelity compares outputs with fp32 eager instead
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)
        return {"kind": "export", "key": key, "export_s": time.perf_counter() - t0, "inputs": key_inputs}

    entry = cache_root() / "onnx" / key
    status, meta = cached(entry, build)
    return entry, status, meta


# --- graph inspection -------------------------------------------------------------------------------

QUANTIZED_OPS = ("MatMulInteger", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
                 "QLinearMatMul")
PASS_THROUGH = ("Transpose", "Identity", "Cast", "Reshape", "DequantizeLinear")  # between a weight and its MatMul


def _graphs(graph: Any):
    """A graph and every subgraph in it (If/Loop bodies)."""
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def initializer_bytes(model: Any) -> int:
    """Bytes of every initializer, from its shape and type (external data included, nothing loaded)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    total = 0
    for graph in _graphs(model.graph):
        for t in graph.initializer:
            count = 1
            for d in t.dims:
                count *= d
            try:
                total += count * tensor_dtype_to_np_dtype(t.data_type).itemsize
            except (KeyError, TypeError, ValueError):
                total += len(t.raw_data)
    return total


def linear_layers(model: Any) -> tuple[Counter, int]:
    """(quantized linear nodes by op type, float MatMul/Gemm nodes whose weight is a constant). A weight
    is constant when it is an initializer, or comes from one through Transpose/Identity/Cast/Reshape/
    DequantizeLinear (GPT-2's output projection is the transposed, tied embedding)."""
    quantized: Counter = Counter()
    left = 0
    for graph in _graphs(model.graph):
        constants = {t.name for t in graph.initializer}
        producers = {out: node for node in graph.node for out in node.output}

        def constant(name: str, depth: int = 0) -> bool:
            if name in constants:
                return True
            node = producers.get(name)
            if node is None or depth > 8:
                return False
            if node.op_type == "Constant":
                return True
            return node.op_type in PASS_THROUGH and bool(node.input) and constant(node.input[0], depth + 1)

        for node in graph.node:
            if node.op_type in QUANTIZED_OPS:
                quantized[node.op_type] += 1
            elif node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and constant(node.input[1]):
                left += 1
    return quantized, left


def verify_quantization(before: Any, after: Any, precision: str, method: str) -> Quantization:
    """Count what the quantizer did to the graph; raise QuantizationNotApplied when it did not apply."""
    quantized, left = linear_layers(after)
    ops = Counter(node.op_type for graph in _graphs(after.graph) for node in graph.node)
    summary = Quantization(method=method, quantized_layers=sum(quantized.values()), float_layers_left=left,
                           weight_bytes_before=initializer_bytes(before), weight_bytes_after=initializer_bytes(after))
    _, float_before = linear_layers(before)
    if summary.quantized_layers == 0:
        raise QuantizationNotApplied(f"{precision}: {method} quantized none of the {float_before} linear "
                                     "layers (MatMul/Gemm with a constant weight); nothing would be int8")
    if precision == "int8-dyn" and ops["DynamicQuantizeLinear"] == 0:
        raise QuantizationNotApplied(f"{precision}: no DynamicQuantizeLinear in the graph: activations "
                                     "would not be quantized")
    if precision == "int8" and ops["DynamicQuantizeLinear"]:
        raise QuantizationNotApplied(f"{precision}: weight-only quantization left DynamicQuantizeLinear "
                                     "nodes: activations would be quantized too")
    if summary.weight_bytes_after >= summary.weight_bytes_before:
        raise QuantizationNotApplied(f"{precision}: weight bytes did not shrink "
                                     f"({summary.weight_bytes_before} -> {summary.weight_bytes_after})")
    return summary


# --- int8 -------------------------------------------------------------------------------------------

QUANT_METHODS = {
    "int8-dyn": "onnxruntime quantize_dynamic (MatMul/Gemm, QInt8 weights per channel, uint8 activations)",
    "int8": "onnxruntime MatMulNBits bits=8 block_size=32 symmetric, accuracy_level unset (weight-only, fp32 "
            "activations)",
}
TWO_GB = 2 * 1024**3  # protobuf's limit: bigger models keep their weights in an external data file


def gemm_to_matmul(model: Any) -> int:
    """Rewrite Gemm(A, W, b) with a constant W as MatMul(A, W) + Add(b): the same math, in the form
    MatMulNBitsQuantizer handles (it quantizes MatMul only; GPT-2's Conv1D layers export as Gemm).
    Returns how many were rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in weights or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            transposed = np.ascontiguousarray(numpy_helper.to_array(weights[weight]).T)
            weight = f"{weight}_transposed_for_matmul"
            graph.initializer.append(numpy_helper.from_array(transposed, weight))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=f"{node.name}_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def quantize(source: Path, precision: str) -> tuple[Path, str, dict[str, Any]]:
    """(directory with the quantized model, "hit" | "miss", its metadata): the exported model in
    `source`, quantized and verified; cached under a key of the export's key and the method."""
    import onnx

    source_meta = json.loads((source / META_FILE).read_text())
    key = digest({"format": CACHE_FORMAT, "export": source_meta["key"], "precision": precision,
                  "method": QUANT_METHODS[precision]})

    def build(out: Path) -> dict[str, Any]:
        for f in source.iterdir():  # configs (and anything else optimum wrote) travel with the graph
            if f.is_file() and f.suffix != ".onnx" and not f.name.startswith(("model.onnx", META_FILE)):
                shutil.copy2(f, out / f.name)
        src, dst = source / "model.onnx", out / "model.onnx"
        external = initializer_bytes(onnx.load(src, load_external_data=False)) > TWO_GB * 0.9
        t0 = time.perf_counter()
        details: dict[str, Any] = {}
        if precision == "int8-dyn":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                             reduce_range=False, weight_type=QuantType.QInt8, use_external_data_format=external)
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                         MatMulNBitsQuantizer)

            graph = onnx.load(src)
            details["gemm_rewritten_as_matmul"] = gemm_to_matmul(graph)
            quantizer = MatMulNBitsQuantizer(graph, algo_config=DefaultWeightOnlyQuantConfig(
                block_size=32, is_symmetric=True, bits=8))
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
        seconds = time.perf_counter() - t0
        summary = verify_quantization(onnx.load(src, load_external_data=False),
                                      onnx.load(dst, load_external_data=False), precision, QUANT_METHODS[precision])
        return {"kind": "quantized", "key": key, "source": source_meta["key"], "quantize_s": seconds,
                "quantization": summary.model_dump(), "details": details}

    entry = cache_root() / "onnx" / key
    status, meta = cached(entry, build)
    return entry, status, meta


# --- the backend ------------------------------------------------------------------------------------

GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    Options = OnnxRuntimeOptions
    capabilities = {task: dict(TASK_PRECISIONS.get(task, PRECISIONS)) for task in TASKS}

    @classmethod
    def unsupported_reason(cls, task: str, precision: str, device_type: str) -> str | None:
        reason = super().unsupported_reason(task, precision, device_type)
        why = WHY_UNSUPPORTED.get((device_type, precision))
        if precision in PRECISIONS.get(device_type, ()):
            why = WHY_UNSUPPORTED_TASK.get((task, precision))
        return f"{reason}: {why}" if reason and why and task in TASKS else reason

    def load_dtype(self, precision: str, device_type: str):
        import torch

        return torch.float16 if precision == "fp16" else torch.float32

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        import onnx
        import onnxruntime as ort
        import optimum.onnxruntime

        opts: OnnxRuntimeOptions = self.options
        build = runtime_build()
        check_runtime(device, ort.get_available_providers(), build)
        modules = torch_modules(model, run.task)
        parameters, _ = weights_of(modules)

        onnx_dir, export_status, export_meta = export(model, run, device, opts.opset)
        # The torch weights are not used again (the ONNX graph holds its own copy): free them, so the
        # measured memory is onnxruntime's.
        for module in modules.values():
            module.to("meta")
        cold = {"export_s": export_meta["export_s"] if export_status == "miss" else 0.0}
        details: dict[str, Any] = {"export_cache": export_status, "export_cache_key": export_meta["key"],
                                   "compute_dtype": export_meta["inputs"]["dtype"].removeprefix("torch.")}
        quantization = None
        if run.precision.startswith("int8"):
            onnx_dir, quant_status, quant_meta = quantize(onnx_dir, run.precision)
            quantization = Quantization(**quant_meta["quantization"])
            cold["quantize_s"] = quant_meta["quantize_s"] if quant_status == "miss" else 0.0
            details.update({"quantize_cache": quant_status, "quantize_cache_key": quant_meta["key"],
                            **quant_meta["details"]})

        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                           GRAPH_OPTIMIZATION[opts.graph_optimization_level])
        if opts.intra_op_num_threads:
            session_options.intra_op_num_threads = opts.intra_op_num_threads
        requested = requested_providers(device)
        io_binding = opts.io_binding if opts.io_binding is not None else device.type == "cuda"
        model_class = getattr(optimum.onnxruntime, TASKS[run.task][1])
        graph_files = GRAPHS.get(run.task, ("model.onnx",))
        single = {"file_name": "model.onnx"} if graph_files == ("model.onnx",) else {}
        t0 = time.perf_counter()
        runnable = model_class.from_pretrained(
            onnx_dir, providers=[name for name, _ in requested],
            provider_options=[options for _, options in requested], session_options=session_options,
            use_io_binding=io_binding, local_files_only=True, **single)
        cold["session_s"] = time.perf_counter() - t0
        sessions = [runnable.session] if single else [
            getattr(runnable, f.split("/")[0]).session for f in graph_files]
        for session in sessions:
            check_providers(requested, session.get_providers(), session.get_provider_options(), build)
            session.disable_fallback()  # a CUDA error must fail the run, not retry it on the CPU
        session = sessions[0]

        graphs = [onnx.load(onnx_dir / f, load_external_data=False) for f in graph_files]
        graph = graphs[0] if single else graphs[1]  # the model, or the UNet
        details.update({
            "onnx_dir": str(onnx_dir),
            "onnx_files": sorted(str(f.relative_to(onnx_dir)) for f in onnx_dir.rglob("*")
                                 if f.is_file() and "onnx" in f.name and f.name != META_FILE),
            "onnx_graphs_run": list(graph_files),
            "providers": session.get_providers(),
            "io_binding": bool(getattr(runnable, "use_io_binding", io_binding)),
            "graph_optimization_level": opts.graph_optimization_level,
            # 0 = onnxruntime's default: one intra-op thread per physical core
            "intra_op_num_threads": session.get_session_options().intra_op_num_threads,
            "inter_op_num_threads": session.get_session_options().inter_op_num_threads,
            "opset": next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None),
            "onnxruntime": ort.__version__,
        })
        return Prepared(runnable=runnable, cold_metrics=cold, details=details,
                        uses_foreign_streams=device.type == "cuda", parameters=parameters,
                        weight_bytes=sum(initializer_bytes(g) for g in graphs), quantization=quantization,
                        monitor=ProviderMonitor(sessions, requested, build))
