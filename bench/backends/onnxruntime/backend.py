"""The onnxruntime backend: export (graphs, export_cache), quantize (quantize), create the sessions on the
requested provider (providers) and hand the workload a runnable that looks like the torch model (runtime).
Which workloads it runs, on which devices and precisions, is keyed by workload class (RECIPES).

Export traces the model the worker built (`torch.onnx.export(dynamo=True)`), so the graph carries exactly the
weights every other backend runs (seeded random weights included); fidelity checks it against fp32 eager.
The model is built in fp32, except fp16 on CUDA (exported from the model already fp16 on the GPU).
The torch weights are freed after export, so the measured memory is onnxruntime's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.backends.base import Backend, Prepared
from bench.backends.onnxruntime import graphs, providers, runtime, tensorrt
from bench.backends.onnxruntime.export_cache import META_FILE, export, torch_modules
from bench.backends.onnxruntime.options import GRAPH_OPTIMIZATION, OnnxRuntimeOptions
from bench.backends.onnxruntime.quantize import initializer_bytes, quantize
from bench.backends.quantize import weights_of
from bench.results import ColdCost, Quantization
from bench.workloads import WORKLOADS
from bench.workloads.feature_extraction import FeatureExtraction
from bench.workloads.text_generation import TextGeneration
from bench.workloads.text_to_image import TextToImage


@dataclass(frozen=True)
class Recipe:
    """How one workload's model is exported and run."""

    kind: str  # the graphs' kind (part of the export cache key)
    export: Callable[..., dict[str, Any]]  # (model, out_dir, device, opset, workload spec) -> graph metadata
    runnable: Callable[..., Any]  # (model, {graph: SessionRunner}, dtype, graph metadata) -> what the workload calls
    graphs: tuple[str, ...] = ("model.onnx",)  # the graphs its sessions execute (a pipeline: several)
    shape_fields: tuple[str, ...] = ()  # workload fields the graphs are specialised to (part of the cache key)
    precisions: dict[str, tuple[str, ...]] | None = None  # None: SUPPORTED
    why_not: dict[str, str] = field(default_factory=dict)  # precision -> why this workload does not run it


def _causal_lm(model, runners, dtype, meta):
    return runtime.ort_causal_lm(runners["model.onnx"], model.config, model.generation_config, dtype, meta)


def _encoder(model, runners, dtype, meta):
    return runtime.ort_encoder(runners["model.onnx"], model.config, dtype)


def _pipeline(model, runners, dtype, meta):
    return runtime.ort_pipeline(model, {g.split("/")[0]: r for g, r in runners.items()}, dtype, meta)


SUPPORTED = {"cpu": ("fp32", "int8", "int8-dyn"), "cuda": ("fp32", "fp16")}
# Keys are workload classes.
RECIPES: dict[type, Recipe] = {
    TextGeneration: Recipe(
        "causal-lm-with-past", lambda m, out, dev, opset, spec: graphs.export_causal_lm(m, out, dev, opset), _causal_lm
    ),
    FeatureExtraction: Recipe(
        "encoder", lambda m, out, dev, opset, spec: graphs.export_encoder(m, out, dev, opset), _encoder
    ),
    TextToImage: Recipe(
        "stable-diffusion",
        lambda m, out, dev, opset, spec: graphs.export_diffusion(m, out, dev, opset, spec["height"], spec["width"]),
        _pipeline,
        ("text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx"),
        ("height", "width"),
        {"cpu": ("fp32",), "cuda": ("fp32", "fp16")},
        {
            "int8": "not enabled for text to image: quantizing the exported UNet graph (its "
            "convolutions and attention MatMuls) has not been built and verified by this "
            "project",
            "int8-dyn": "not enabled for text to image: dynamic quantization of the exported UNet "
            "graph has not been built and verified by this project",
        },
    ),
}
# Why the other points are unsupported (appended to the `unsupported` record's reason).
WHY_UNSUPPORTED = {
    ("cpu", "fp16"): "onnxruntime's CPUExecutionProvider implements few operators in fp16 (most nodes of an "
    "fp16 graph would run through inserted casts or fail to load)",
    ("cpu", "bf16"): "onnxruntime's CPUExecutionProvider implements few operators in bfloat16 (a "
    "bfloat16 graph's session likely fails to load)",
    ("cuda", "bf16"): "onnxruntime's CUDAExecutionProvider implements few operators in bfloat16 (a "
    "bfloat16 graph's session likely fails to load)",
    ("cuda", "int8-dyn"): "onnxruntime's dynamic quantization operators (DynamicQuantizeLinear, "
    "MatMulInteger) are CPU kernels: on CUDA those nodes would run on the CPU "
    "without an error",
    ("cuda", "int8"): "not enabled: MatMulNBits has 8-bit CUDA kernels (onnxruntime >= 1.22), but "
    "quantizing the fp16 graph has not been run on a GPU by this project yet",
}


def recipe(task: str) -> Recipe | None:
    workload = WORKLOADS.get(task)
    return next((RECIPES[k] for k in workload.__mro__ if k in RECIPES), None) if workload else None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    Options = OnnxRuntimeOptions
    capabilities = {workload: dict(r.precisions or SUPPORTED) for workload, r in RECIPES.items()}
    cold_costs = (
        ColdCost("export_s", "ONNX export (0 when the export cache was hit)", column="export"),
        ColdCost("quantize_s", "int8: quantizing the exported graph (0 on a cache hit)"),
        ColdCost("session_s", "creating the inference session(s)"),
        ColdCost(
            "engine_build_s",
            "TensorRT: creating the sessions on an engine-cache miss (the engines are built there, from explicit "
            "profiles; 0 on a hit)",
        ),
    )

    @classmethod
    def unsupported_reason(
        cls, task: str, precision: str, device_type: str, options: dict[str, Any] | None = None
    ) -> str | None:
        reason = super().unsupported_reason(task, precision, device_type)
        found = recipe(task)
        why = WHY_UNSUPPORTED.get((device_type, precision))
        if precision in SUPPORTED.get(device_type, ()):
            why = found.why_not.get(precision) if found else None
        if reason:
            return f"{reason}: {why}" if why and found else reason
        if (options or {}).get("execution_provider") == "tensorrt":
            import onnxruntime as ort

            return tensorrt.missing(device_type, precision, ort.get_available_providers())
        return None

    def load_dtype(self, precision: str, device_type: str):
        import torch

        return torch.float16 if precision == "fp16" else torch.float32

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        import onnx
        import onnxruntime as ort

        opts: OnnxRuntimeOptions = self.options
        how = recipe(run.task)
        build = providers.runtime_build()
        providers.check_runtime(device, ort.get_available_providers(), build)
        modules = torch_modules(model, run.task)
        parameters, _ = weights_of(modules)
        dtype = next(p for m in modules.values() for p in m.parameters()).dtype

        shape = {f: run.workload[f] for f in how.shape_fields}
        onnx_dir, export_status, export_meta = export(
            model,
            run,
            device,
            opts.opset,
            how.kind,
            lambda out: how.export(model, out, device, opts.opset, run.workload),
            shape,
        )
        # The torch weights are not used again (the ONNX graph holds its own copy): free them, so the
        # measured memory is onnxruntime's.
        for module in modules.values():
            module.to("meta")
        cold = {"export_s": export_meta["export_s"] if export_status == "miss" else 0.0}
        details: dict[str, Any] = {
            "exporter": "torch.onnx.export(dynamo=True)",
            "export_cache": export_status,
            "export_cache_key": export_meta["key"],
            "compute_dtype": export_meta["inputs"]["dtype"].removeprefix("torch."),
        }
        quantization, graph_key = None, export_meta["key"]  # graph_key: the cache entry the sessions load
        if run.precision.startswith("int8"):
            onnx_dir, quant_status, quant_meta = quantize(onnx_dir, run.precision)
            quantization, graph_key = Quantization(**quant_meta["quantization"]), quant_meta["key"]
            cold["quantize_s"] = quant_meta["quantize_s"] if quant_status == "miss" else 0.0
            details.update(
                {"quantize_cache": quant_status, "quantize_cache_key": quant_meta["key"], **quant_meta["details"]}
            )

        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[opts.graph_optimization_level]
        )
        if opts.intra_op_num_threads:
            session_options.intra_op_num_threads = opts.intra_op_num_threads
        requested, engine_dirs = {}, []
        for g in how.graphs:
            trt = None
            if opts.execution_provider == "tensorrt":
                trt, engines = tensorrt.provider_options(
                    device, run.precision, graph_key, g, how.kind, export_meta["graph"], run, build
                )
                engine_dirs.append(engines)
            requested[g] = providers.requested_providers(device, trt)
        engines_cached = bool(engine_dirs) and all(any(Path(d).glob("*.engine")) for d in engine_dirs)
        io_binding = opts.io_binding if opts.io_binding is not None else device.type == "cuda"
        t0 = time.perf_counter()
        sessions = {
            g: ort.InferenceSession(
                str(onnx_dir / g),
                sess_options=session_options,
                providers=[name for name, _ in requested[g]],
                provider_options=[options for _, options in requested[g]],
            )
            for g in how.graphs
        }
        cold["session_s"] = time.perf_counter() - t0
        if engine_dirs:
            cold["engine_build_s"] = 0.0 if engines_cached else cold["session_s"]
            details.update(
                {
                    "tensorrt": tensorrt.library_version()[0],
                    "tensorrt_engine_cache": "hit" if engines_cached else "miss",
                    "tensorrt_engine_dirs": engine_dirs,
                }
            )
        for g, session in sessions.items():
            providers.check_providers(requested[g], session.get_providers(), session.get_provider_options(), build)
            session.disable_fallback()  # a CUDA error must fail the run, not retry it on the CPU
        runners = {g: runtime.SessionRunner(s, device, io_binding) for g, s in sessions.items()}
        runnable = how.runnable(model, runners, dtype, export_meta["graph"])

        loaded = [onnx.load(onnx_dir / g, load_external_data=False) for g in how.graphs]
        graph = loaded[0] if len(loaded) == 1 else loaded[1]  # the model, or the UNet
        session = next(iter(sessions.values()))
        details.update(
            {
                "onnx_dir": str(onnx_dir),
                "onnx_files": sorted(
                    str(f.relative_to(onnx_dir))
                    for f in onnx_dir.rglob("*")
                    if f.is_file() and "onnx" in f.name and f.name != META_FILE
                ),
                "onnx_graphs_run": list(how.graphs),
                "providers": session.get_providers(),
                "io_binding": io_binding,
                "execution_provider": opts.execution_provider,
                "graph_optimization_level": opts.graph_optimization_level,
                # 0 = onnxruntime's default: one intra-op thread per physical core
                "intra_op_num_threads": session.get_session_options().intra_op_num_threads,
                "inter_op_num_threads": session.get_session_options().inter_op_num_threads,
                "opset": next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None),
                "onnxruntime": ort.__version__,
            }
        )
        return Prepared(
            runnable=runnable,
            cold_metrics=cold,
            details=details,
            uses_foreign_streams=device.type == "cuda",
            parameters=parameters,
            weight_bytes=sum(initializer_bytes(g) for g in loaded),
            quantization=quantization,
            monitor=providers.ProviderMonitor(list(sessions.values()), [requested[g] for g in sessions], build),
        )
