"""A record's roofline: the analytic work of its measured units (bench.roofline.work), the rates achieved, the
bound (memory or compute) and the fraction of each ceiling (calibrated, datasheet) reached; computed by the
worker at the end of a run and completed by `bench report` (docs/roofline.md)."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from bench.roofline import calibrate, datasheets, work
from bench.roofline.schema import Bound, Ceiling, Phase, Roofline

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
    """What `bench report` shows: the record's own section, with the calibrated bounds filled in from the
    calibration store when the run had none; the whole section computed now for records that predate it."""
    rf = record.roofline
    if rf is None:
        return for_record(record, computed_at="report")
    if "calibrated" not in rf.ceilings and rf.phases:
        found = calibrated_ceiling(record)
        if found is not None:
            rf = rf.model_copy(deep=True)
            rf.ceilings["calibrated"] = found
            rf.notes = [n for n in rf.notes if not n.startswith("no calibration")]
            rf.notes.append("calibrated bounds added by bench report from the calibration store "
                            "(the run itself had no calibration)")
            for phase in rf.phases.values():
                phase.bounds = bounds(phase, rf.ceilings)
    return rf


def _for_record(record: Any, config: Any, ref: Any, computed_at: str) -> Roofline:
    from bench.workloads import WORKLOADS

    notes: list[str] = []
    rf = Roofline(computed_at=computed_at)
    if record.task not in ("text-generation", "feature-extraction", "text-to-image"):
        rf.notes.append(f"no analytic model of task {record.task}")
        return rf
    if config is None:
        config = _config(record, ref)
    float_dtype = _float_dtype(record)
    compute_dtype = "int8" if record.precision == "int8-dyn" else float_dtype
    fbytes = FLOAT_BYTES[float_dtype]
    if record.task == "text-to-image":
        step = _denoising_step(record, config, fbytes, compute_dtype, notes)
        if step is None:
            rf.notes = notes
            return rf
        rf.phases["step"], rf.primary = step, "step"
        return _with_ceilings(rf, record, notes)
    shape = work.model_shape(config, WORKLOADS[record.task].model_class())
    weight_bytes = record.weight_bytes
    if weight_bytes is None:  # records from before weight_bytes existed: an unquantized model is exact
        if record.precision.startswith("int8"):
            rf.notes.append("record has no weight_bytes (quantized weights cannot be inferred)")
            return rf
        weight_bytes = shape.parameters * fbytes
        notes.append("weight bytes inferred as parameters × dtype size (the record predates weight_bytes)")
    # A quantizer that left no linear layer in floating point quantized the tied LM head too, into its own
    # int8 copy (torchao); one that left some (ONNX Runtime keeps GPT-2's transposed, tied head in fp32)
    # still reads the float table in full.
    q = record.quantization
    weights = work.weights_read_bytes(shape, weight_bytes, fbytes, q is not None and q.float_layers_left == 0)
    m, batch = record.metrics, record.batch_size
    if record.task == "text-generation":
        prompt, new = record.prompt_tokens, record.new_tokens
        if m.tpot_s is not None and new and new > 1:
            rf.phases["decode"] = work.decode_step(shape, batch, prompt, new, weights, fbytes, compute_dtype,
                                                   m.tpot_s.p50, "tpot_s p50")
        if m.ttft_s is not None:
            rf.phases["prefill"] = work.prefill(shape, batch, prompt, weights, fbytes, compute_dtype,
                                                m.ttft_s.p50, "ttft_s p50")
        rf.primary = "decode" if "decode" in rf.phases else "prefill"
    else:
        length = record.workload.get("sequence_length")
        rf.phases["forward"] = work.encoder_forward(shape, batch, length, weights, fbytes, compute_dtype,
                                                    m.latency_s.p50, "latency_s p50")
        rf.primary = "forward"
    return _with_ceilings(rf, record, notes)


def _denoising_step(record: Any, config: Any, fbytes: int, dtype: str, notes: list[str]):
    """The UNet step of a text-to-image record (None, with a note, when it cannot be computed)."""
    from bench.workloads.text_to_image import TextToImageSpec

    m = record.metrics
    if getattr(m, "step_s", None) is None:
        notes.append("record has no step_s")
        return None
    spec = TextToImageSpec.model_validate(record.workload)
    factor = 2 ** (len(config["vae"].get("block_out_channels", [0])) - 1)
    latents = record.batch_size * (2 if spec.guidance_scale > 1 else 1)  # classifier-free guidance: 2 batches
    text_tokens = config["text_encoder"].get("max_position_embeddings", 77)
    if record.quantization is not None:  # the backend quantized the UNet: its bytes as run
        unet_bytes = record.quantization.weight_bytes_after
    elif record.precision.startswith("int8"):
        notes.append("int8 record without its quantization summary: UNet bytes unknown")
        return None
    else:
        unet_bytes = work.unet_parameters(config["unet"]) * fbytes
    return work.unet_step(config["unet"], latents, spec.height // factor, spec.width // factor, text_tokens,
                          unet_bytes, fbytes, dtype, m.step_s.p50, "step_s p50")


def _with_ceilings(rf: Roofline, record: Any, notes: list[str]) -> Roofline:
    found = calibrated_ceiling(record)
    if found is not None:
        rf.ceilings["calibrated"] = found
    else:
        notes.append(f"no calibration for {_identity(record)}: run `bench calibrate` on that machine")
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
            missing.append(f"{dtype} matmul peak" + (f" ({ceiling.unavailable[dtype]})" if dtype in ceiling.unavailable
                                                     else ""))
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
    return Ceiling(source="datasheet", device_name=record.device_name, memory_bytes_per_s=sheet.memory_bytes_per_s,
                   matmul_flops_per_s=dict(sheet.matmul_flops_per_s), unavailable=dict(sheet.unknown),
                   reference=f"{sheet.name}: {sheet.source} (dense peaks)")


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
