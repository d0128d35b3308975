"""torch.compile backend: the model's forward compiled with static shapes (`dynamic=False`); text generation
through HF generate's compiled decode step with a static KV cache (the prefill stays eager). `compile_s` is
dynamo + inductor's own accounting over the cold calls; a compilation in the measured phase invalidates the
record. `generation: loop` (text generation) runs bench.backends.decode_loop instead of HF generate
(docs/compile-loop.md). Options, cache modes and why: docs/backends.md.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bench.backends.base import Backend, Monitor, Prepared
from bench.backends.eager import QUANTIZE, prepare_torch
from bench.cache import cache_dir
from bench.precisions import PRECISIONS
from bench.results import ColdCost
from bench.workloads.base import Workload


class CompileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    fullgraph: bool = False
    cache: Literal["cold", "warm"] = "cold"
    # text generation: HF `generate` around a compiled decode step, or the lean loop (bench.backends.decode_loop)
    generation: Literal["generate", "loop"] = "generate"
    # torch.compile's own `backend`: inductor generates kernels; aot_eager traces and runs the same graph
    # without code generation (tells dynamo's capture cost from inductor's, and compiles in seconds).
    compiler: Literal["inductor", "aot_eager"] = "inductor"
    # inductor's `freezing` (torch._inductor.config.freezing): parameters become constants of the compiled graph,
    # so inductor folds and pre-packs them (on the CPU its C++ GEMM templates under max-autotune need it). The
    # weights must not change after the first call, which holds for inference; docs/backends.md.
    freezing: bool = False


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # inductor modes that capture CUDA graphs on CUDA


def use_inductor_cache(cache: str) -> str:
    """Point inductor (and triton) at the cache directory for this run, before anything compiles."""
    if cache == "warm":
        directory = cache_dir("inductor")
        directory.mkdir(parents=True, exist_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="bench-inductor-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    os.environ["TRITON_CACHE_DIR"] = str(directory / "triton")
    return str(directory)


class CompileMonitor(Monitor):
    """Reads dynamo's own compilation records: one per frame compilation, with its time and the reason
    it recompiled."""

    def __init__(self) -> None:
        self._seen = 0

    @staticmethod
    def _metrics() -> list[Any]:
        from torch._dynamo.utils import get_compilation_metrics

        return list(get_compilation_metrics())

    @staticmethod
    def _graph_breaks() -> int:
        from torch._dynamo.utils import counters

        return int(sum(counters["graph_break"].values()))

    def cold_metrics(self) -> dict[str, float]:
        metrics = self._metrics()
        self._seen = len(metrics)
        self._breaks = self._graph_breaks()
        self._cold = metrics
        return {"compile_s": sum(m.entire_frame_compile_time_s or 0.0 for m in metrics)}

    def end_measured(self) -> tuple[dict[str, Any], list[str]]:
        metrics = self._metrics()
        late = metrics[self._seen :]
        late_breaks = self._graph_breaks() - self._breaks
        cold = self._cold

        def total(ms: list[Any], field: str) -> int:
            return int(sum(getattr(m, field, None) or 0 for m in ms))

        details = {
            "compile": {
                "compilations_cold": len(cold),
                "graph_breaks": self._breaks,
                "fx_graph_cache_hits": total(cold, "inductor_fx_local_cache_hit_count"),
                "fx_graph_cache_misses": total(cold, "inductor_fx_local_cache_miss_count"),
                "recompile_reasons_cold": [m.recompile_reason for m in cold if getattr(m, "recompile_reason", None)],
                "compilations_measured": len(late),
                "graph_breaks_measured": late_breaks,
            }
        }
        invalid = []
        if late:
            reasons = "; ".join(str(getattr(m, "recompile_reason", None) or "first compile") for m in late)[:300]
            invalid.append(
                f"torch.compile compiled {len(late)} time(s) during the measured phase ({reasons}); "
                "raise measure.warmup"
            )
        if late_breaks:
            invalid.append(f"{late_breaks} graph break(s) during the measured phase")
        return details, invalid


class CompileBackend(Backend):
    name = "compile"
    Options = CompileOptions
    capabilities = {Workload: {"cpu": PRECISIONS, "cuda": PRECISIONS}}  # any workload's torch model
    cold_costs = (
        ColdCost("compile_s", "time dynamo + inductor spent compiling (cold calls)", column="compile"),
        QUANTIZE,
    )

    @classmethod
    def unsupported_reason(
        cls, task: str, precision: str, device_type: str, options: dict[str, Any] | None = None
    ) -> str | None:
        reason = super().unsupported_reason(task, precision, device_type)
        if reason is None and (options or {}).get("freezing") and (options or {}).get("generation") != "loop":
            from bench.workloads import WORKLOADS
            from bench.workloads.text_generation import TextGeneration

            if issubclass(WORKLOADS[task], TextGeneration):
                # Measured 2026-12-01 (torch 2.13, transformers 5.24, CPU): HF generate's compiled decode step
                # built with freezing fails in its first call ("index out of bounds" in the fused KV-cache
                # update kernel), in default and max-autotune mode; the bench loop compiles the same model fine.
                return (
                    "compile option freezing with HF generate's compiled decode step fails in inductor (index out "
                    "of bounds in the fused cache update); use generation: loop"
                )
        return reason

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        import torch

        from bench.workloads import WORKLOADS
        from bench.workloads.text_generation import TextGeneration

        opts: CompileOptions = self.options
        if opts.freezing and opts.compiler != "inductor":
            raise ValueError(f"compile option freezing is inductor's; compiler {opts.compiler} has none")
        workload = WORKLOADS[run.task]
        if opts.mode == "reduce-overhead" and device.type != "cuda":
            raise ValueError("compile mode reduce-overhead uses CUDA graphs: it needs a CUDA device")
        if opts.compiler != "inductor" and opts.mode != "default":
            raise ValueError(f"compile mode {opts.mode} is an inductor mode; compiler {opts.compiler} has none")
        if opts.generation == "loop" and not issubclass(workload, TextGeneration):
            raise ValueError(f"compile option generation: loop is for text generation, not {run.task}")
        cache_dir = use_inductor_cache(opts.cache)
        if opts.freezing:  # read when inductor compiles (the first call); this worker process runs one point
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        prepared = prepare_torch(model, run)  # quantize first: compile the int8 model
        mode = None if opts.compiler != "inductor" else opts.mode
        prepared.details.update(
            {
                "compiler": opts.compiler,
                "compile_mode": opts.mode,
                "fullgraph": opts.fullgraph,
                "freezing": opts.freezing,
                "dynamic": False,
                "inductor_cache": opts.cache,
                "inductor_cache_dir": cache_dir,
            }
        )
        if issubclass(workload, TextGeneration) and opts.generation == "loop":
            from bench.backends.decode_loop import DecodeLoop

            prepared.runnable = DecodeLoop(
                model,
                dict(backend=opts.compiler, mode=mode, dynamic=False, fullgraph=opts.fullgraph),
                cuda_graphs=device.type == "cuda" and opts.mode in CUDA_GRAPH_MODES,
            )
            prepared.details.update(
                {
                    "generation": "loop",
                    "cache_implementation": "static",
                    "compiled": "decode step (bench decode loop: forward + greedy argmax); prefill eager",
                }
            )
        elif issubclass(workload, TextGeneration):  # generate(): HF's own compiled decode step
            from transformers import CompileConfig

            config = CompileConfig(fullgraph=opts.fullgraph, dynamic=False, backend=opts.compiler, mode=mode)
            config._compile_all_devices = True  # HF compiles on CUDA only unless told
            model.generation_config.cache_implementation = "static"
            model.generation_config.compile_config = config
            model.generation_config.disable_compile = False
            prepared.details.update(
                {
                    "generation": "generate",
                    "cache_implementation": "static",
                    "compiled": "decode step (HF generate's compiled call); prefill eager",
                }
            )
        else:
            target = workload.optimized_module(model)  # the encoder, or a pipeline's UNet
            target.forward = torch.compile(
                target.forward, backend=opts.compiler, mode=mode, dynamic=False, fullgraph=opts.fullgraph
            )
        prepared.monitor = CompileMonitor()
        return prepared
