"""A record's roofline: the analytic work of its measured units (bench.roofline.work), the rates achieved, the
bound (memory or compute) and the fraction of each ceiling (calibrated, datasheet) reached. Computed by the
worker at the end of a run, with the calibration stored on the machine that ran it; `bench report` keeps that
section as stored and computes only the analytic part of records that predate it (docs/roofline.md)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.roofline import calibrate, datasheets, work
from bench.roofline.schema import NO_STORED_CALIBRATION, Bound, Ceiling, Phase, Roofline

FLOAT_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2}
_TORCH_TO_NAME = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def for_record(record: Any, config: Any = None, ref: Any = None, computed_at: str = "run") -> Roofline | None:
    """The roofline section of a measured record (None for one that did not measure). Never raises: what
    cannot be computed is a note, so a roofline problem never fails a run or a report."""
    if record.status != "ok" or record.metrics is None:
        return None
    try:
        return _for_record(record, config, ref, computed_at)
    except Exception as exc:
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return Roofline(computed_at=computed_at, notes=[f"roofline not computed: {type(exc).__name__}: {first}"])


def for_run(record: Any, run: Any) -> Roofline | None:
    """The worker's call, at the end of a run: the config comes from the model the run resolved."""
    from bench import models

    return for_record(record, ref=models.ModelRef(run.model, run.weights, run.model_kind, run.model_location))


def for_report(record: Any) -> Roofline | None:
    """What `bench report` shows: the record's own section, its ceilings as its run stored them (the
    calibration of the machine that ran it). Never this machine's: a record whose run stored no calibration
    keeps no calibrated bounds, and one that predates the section gets its analytic part computed now, with
    the datasheet ceiling alone where the device has one."""
    if record.roofline is None:
        return for_record(record, computed_at="report")
    return record.roofline


@dataclass
class Context:
    """What the workloads' `roofline` hooks share: the record's dtypes and the section's notes."""

    fbytes: int  # bytes of the floating dtype of activations, KV cache and embeddings
    compute_dtype: str  # the dtype whose matmul peak bounds the unit (int8 for int8-dyn)
    notes: list[str] = field(default_factory=list)

    def transformer(self, record: Any, config: Any, model_class: Any) -> tuple[Any, float] | None:
        """(work.ModelShape, weight bytes read per pass) of a transformers model; None (with a note) when the
        weight bytes cannot be known."""
        shape = work.model_shape(config, model_class)
        weight_bytes = record.weight_bytes
        if weight_bytes is None:  # records from before weight_bytes existed: an unquantized model is exact
            if record.precision.startswith("int8"):
                self.notes.append("record has no weight_bytes (quantized weights cannot be inferred)")
                return None
            weight_bytes = shape.parameters * self.fbytes
            self.notes.append("weight bytes inferred as parameters × dtype size (the record predates weight_bytes)")
        # A quantizer that left no linear layer in floating point quantized the tied LM head too, into its own
        # int8 copy (torchao); one that left some (ONNX Runtime keeps GPT-2's transposed, tied head in fp32)
        # still reads the float table in full.
        q = record.quantization
        return shape, work.weights_read_bytes(
            shape, weight_bytes, self.fbytes, q is not None and q.float_layers_left == 0
        )


def _for_record(record: Any, config: Any, ref: Any, computed_at: str) -> Roofline:
    from bench.workloads import WORKLOADS
    from bench.workloads.base import Workload

    rf = Roofline(computed_at=computed_at)
    workload = WORKLOADS.get(record.task)
    if workload is None or workload.roofline.__func__ is Workload.roofline.__func__:
        rf.notes.append(f"no analytic model of task {record.task}")
        return rf
    if config is None:
        config = _config(record, ref)
    float_dtype = _float_dtype(record)
    ctx = Context(FLOAT_BYTES[float_dtype], "int8" if record.precision == "int8-dyn" else float_dtype)
    found = workload.roofline(record, config, ctx)
    if found is None:
        rf.notes = ctx.notes
        return rf
    rf.phases, rf.primary = found
    return _with_ceilings(rf, record, ctx.notes)


def _with_ceilings(rf: Roofline, record: Any, notes: list[str]) -> Roofline:
    # The calibration store is the running machine's only in the worker; `bench report` may run anywhere.
    found = calibrated_ceiling(record) if rf.computed_at == "run" else None
    if found is not None:
        rf.ceilings["calibrated"] = found
    elif rf.computed_at == "run":
        notes.append(f"no calibration for {_identity(record)}: run `bench calibrate` on that machine")
    else:
        notes.append(f"{NO_STORED_CALIBRATION} for {_identity(record)} (the record predates the roofline section)")
    sheet = datasheet_ceiling(record)
    if sheet is not None:
        rf.ceilings["datasheet"] = sheet
    elif record.device.startswith("cuda"):
        notes.append(f"no datasheet entry for {record.device_name!r}")
    for phase in rf.phases.values():
        phase.bounds = bounds(phase, rf.ceilings)
    rf.notes = notes
    return rf


def bounds(phase: Phase, ceilings: dict[str, Ceiling]) -> dict[str, Bound]:
    return {source: bound(phase, c) for source, c in ceilings.items()}


def bound(phase: Phase, ceiling: Ceiling) -> Bound:
    dtype = phase.compute_dtype
    peak_flops = ceiling.matmul_flops_per_s.get(dtype)
    peak_bytes = ceiling.memory_bytes_per_s
    b = Bound(dtype=dtype, peak_flops_per_s=peak_flops, peak_bytes_per_s=peak_bytes)
    if peak_bytes:
        b.bandwidth_fraction = phase.achieved_bytes_per_s / peak_bytes
    if peak_flops:
        b.compute_fraction = phase.achieved_flops_per_s / peak_flops
    if peak_flops and peak_bytes:
        b.ridge_flops_per_byte = peak_flops / peak_bytes
        intensity = phase.arithmetic_intensity_flops_per_byte
        b.bound = "memory" if intensity < b.ridge_flops_per_byte else "compute"
        b.attainable_flops_per_s = min(peak_flops, intensity * peak_bytes)
        b.fraction = phase.achieved_flops_per_s / b.attainable_flops_per_s
    else:
        missing = [] if peak_bytes else ["memory bandwidth"]
        if not peak_flops:
            missing.append(
                f"{dtype} matmul peak" + (f" ({ceiling.unavailable[dtype]})" if dtype in ceiling.unavailable else "")
            )
        b.note = f"{ceiling.source} ceiling has no {' and no '.join(missing)}"
    return b


def calibrated_ceiling(record: Any) -> Ceiling | None:
    device_type = "cuda" if record.device.startswith("cuda") else "cpu"
    if not record.device_name:
        return None
    threads = (record.details or {}).get("torch_threads") if device_type == "cpu" else None
    found = calibrate.load(device_type, record.device_name, threads)
    return found[0].ceiling(found[1]) if found else None


def datasheet_ceiling(record: Any) -> Ceiling | None:
    if not record.device.startswith("cuda"):
        return None
    sheet = datasheets.lookup(record.device_name)
    if sheet is None:
        return None
    return Ceiling(
        source="datasheet",
        device_name=record.device_name,
        memory_bytes_per_s=sheet.memory_bytes_per_s,
        matmul_flops_per_s=dict(sheet.matmul_flops_per_s),
        unavailable=dict(sheet.unknown),
        reference=f"{sheet.name}: {sheet.source} (dense peaks)",
    )


def _identity(record: Any) -> str:
    if record.device.startswith("cuda"):
        return repr(record.device_name)
    threads = (record.details or {}).get("torch_threads")
    return f"{record.device_name!r} with {threads} torch threads"


def _float_dtype(record: Any) -> str:
    """The floating dtype of activations, KV cache and embeddings: the precision itself, or for int8 the
    dtype the worker recorded (fp32 on the CPU, bf16 on CUDA)."""
    if record.precision in FLOAT_BYTES:
        return record.precision
    details = record.details or {}
    recorded = details.get("compute_dtype") or details.get("dtype")
    if recorded in _TORCH_TO_NAME:
        return _TORCH_TO_NAME[recorded]
    return "bf16" if record.device.startswith("cuda") else "fp32"


def _config(record: Any, ref: Any = None) -> Any:
    """The model config a record ran: from the run's resolved model (worker), else resolved as the scenario
    did (relative directories from the scenario file's folder)."""
    from bench import models

    if ref is None:
        base = Path(record.scenario_file).parent if record.scenario_file else None
        ref = models.resolve(record.model, record.weights, base_dir=base)
    return models.load_config(ref)
