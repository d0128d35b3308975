"""The record schema (the only thing reports, compare and roofline read) and JSONL storage.

One record per (matrix point, repeat). Units live in field names. Raw samples are kept in the stats.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from bench.measure.memory import MemoryMetrics
from bench.measure.stats import Stats
from bench.measure.telemetry.schema import Telemetry
from bench.roofline.schema import Roofline

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"  # inside a run directory: one record per line
ENVIRONMENT_FILE = "environment.json"
Status = Literal["ok", "failed", "unsupported", "timeout"]


class Throughput(BaseModel):
    output_tokens_per_s: float | None = None  # batch × new_tokens / mean latency
    requests_per_s: float | None = None  # batch / mean latency (one sequence = one request)
    prefill_tokens_per_s: float | None = None  # batch × prompt_tokens / mean TTFT
    decode_tokens_per_s: float | None = None  # batch × (new_tokens − 1) / mean (latency − TTFT)
    sequences_per_s: float | None = None  # feature extraction: batch / mean latency
    input_tokens_per_s: float | None = None  # feature extraction: batch × sequence_length / mean latency
    images_per_s: float | None = None  # text to image: batch / mean latency
    steps_per_s: float | None = None  # text to image: denoising steps / mean latency


@dataclass(frozen=True)
class ThroughputMetric:
    field: str  # attribute of `Throughput` in the record schema
    unit: str  # what the tables and axes call it


# The throughput a record is judged by, per task: every table, ratio, chart and the gate follow this.
PRIMARY_THROUGHPUT: dict[str, ThroughputMetric] = {
    "text-generation": ThroughputMetric("output_tokens_per_s", "tokens/s"),
    "feature-extraction": ThroughputMetric("sequences_per_s", "sequences/s"),
    "text-to-image": ThroughputMetric("images_per_s", "images/s"),
}


def primary_throughput(record: Record) -> tuple[ThroughputMetric, float] | None:
    """The metric a record's speed is compared on, with its value; None when the record has none."""
    metric = PRIMARY_THROUGHPUT.get(record.task)
    if metric is None or record.metrics is None:
        return None
    value = getattr(record.metrics.throughput, metric.field, None)
    return (metric, value) if value is not None else None


class Fidelity(BaseModel):
    """How far this run's outputs are from the fp32 eager reference (same model, weights, inputs, device).

    `output` names what was compared: the logits at the prompt's last position (text generation) or the
    pooled embedding (feature extraction). Cosine is per batch row; relative error is max|x−ref| / max|ref|
    (an elementwise ratio explodes near zero)."""

    reference: str  # e.g. "eager fp32 on cpu"
    output: str
    cosine_mean: float
    cosine_min: float
    max_abs_error: float
    max_rel_error: float
    rmse: float | None = None  # root mean square error (for images in [0, 1]: PSNR = −20·log10(rmse) dB)
    top1_agreement: float | None = None  # rows whose argmax matches the reference's (text generation)
    token_agreement: float | None = None  # generated positions whose greedy token matches the reference's
    matched_prefix_tokens: float | None = None  # mean count of leading generated tokens identical to it


class Quantization(BaseModel):
    """What a quantizing backend did, verified after the fact (a run whose quantization did not apply fails)."""

    method: str  # e.g. "torchao Int8WeightOnlyConfig", "onnxruntime quantize_dynamic"
    quantized_layers: int
    float_layers_left: int  # layers of the kind that was targeted but stayed in floating point
    weight_bytes_before: int
    weight_bytes_after: int


class Metrics(BaseModel):
    latency_s: Stats
    ttft_s: Stats | None = None
    tpot_s: Stats | None = None
    itl_s: Stats | None = None  # every inter-token gap of every measured call (summary only)
    step_s: Stats | None = None  # text to image: each denoising step (UNet + scheduler) of every call
    vae_decode_s: Stats | None = None  # text to image: VAE decode per call
    text_encode_s: Stats | None = None  # text to image: prompt encoding per call
    throughput: Throughput
    memory: MemoryMetrics
    load_s: float  # build/load the model onto the device
    first_call_s: float  # the first (cold) call, never part of the measured samples
    warmup_calls: int
    measured_time_s: float  # wall time of the measured phase
    # Cold costs of a backend, each its own number and never part of the measured samples.
    compile_s: float | None = None  # torch.compile: time dynamo + inductor spent compiling (cold calls)
    export_s: float | None = None  # onnxruntime: ONNX export (0 when the export cache was hit)
    quantize_s: float | None = None  # int8: quantizing the weights
    session_s: float | None = None  # onnxruntime: creating the inference session(s)


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    point_id: str
    scenario: str
    scenario_file: str
    model: str
    weights: str
    task: str
    backend: str
    precision: str
    batch_size: int
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    workload: dict[str, Any] = {}
    backend_options: dict[str, Any] = {}
    measure: dict[str, Any] = {}  # the measure settings it was measured with (run_id covers them)
    device: str  # resolved: cpu | cuda:N
    device_name: str | None = None
    repeat: int = 0
    # "<session>:<point>:<round>" when measured interleaved with other arms (bench ab): repeats of two arms
    # with the same pair ran back to back, and bench compare compares them as pairs.
    pair: str | None = None
    status: Status
    error: str | None = None
    valid: bool | None = None  # False when the measurement is too noisy to trust (reasons say why)
    invalid_reasons: list[str] = []
    warnings: list[str] = []
    details: dict[str, Any] = {}  # e.g. torch threads, attention implementation, compile counters
    parameters: int | None = None  # parameter count of the model as run
    weight_bytes: int | None = None  # bytes of its weights as run (after quantization; the roofline needs it)
    quantization: Quantization | None = None
    fidelity: Fidelity | None = None
    started_at: str | None = None
    duration_s: float | None = None  # whole run, process start to record
    metrics: Metrics | None = None
    # Analytic FLOPs/bytes of the measured units, achieved rates, fraction of the device's ceilings (bench.roofline).
    roofline: Roofline | None = None
    telemetry: Telemetry | None = None  # energy, power, clocks, throttling of the measured phase (measure.telemetry)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# JSONL storage lives in bench.store (integrity, side files, the directory lock); re-exported here.
from bench.store import append_record, append_records, read_records, write_json  # noqa: E402,F401
