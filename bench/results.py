"""The record schema (the only thing reports, compare and roofline read) and JSONL storage.

One record per (matrix point, repeat). Units live in field names. Raw samples are kept in the stats.
`metrics` is the record's workload's own model (bench.workloads), `cold_costs` what the worker and the
backend declared; the top-level shape is in docs/design.md ("Workloads and their metrics").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, SerializeAsAny, model_validator

from bench.measure.memory import MemoryMetrics
from bench.measure.telemetry.schema import Telemetry
from bench.roofline.schema import Roofline
from bench.serving.metrics import ServingLevel
from bench.workloads.metrics import MetricInfo, WorkloadMetrics

SCHEMA_VERSION = 2
RESULTS_FILE = "results.jsonl"  # inside a run directory: one record per line
ENVIRONMENT_FILE = "environment.json"
Status = Literal["ok", "failed", "unsupported", "timeout"]


@dataclass(frozen=True)
class ColdCost:
    """A one-off cost of a run, declared by whoever pays it (the worker or a backend), never in the samples."""

    name: str  # key in the record's `cold_costs`; the unit is in the name (`_s`: seconds)
    what: str
    column: str | None = None  # header of the report's points-table column, None: not shown there

    @property
    def unit(self) -> str:
        return "s" if self.name.endswith("_s") else self.name.rsplit("_", 1)[-1]


# Paid by every run, whatever its backend (the worker measures them).
RUN_COLD_COSTS = (
    ColdCost("load_s", "build/load the model onto the device"),
    ColdCost("first_call_s", "the first (cold) call, never part of the measured samples"),
)


def primary_throughput(record: Record) -> tuple[MetricInfo, float] | None:
    """The metric a record's speed is compared on (its workload's `primary`), with its value; None when the
    record has none."""
    from bench.workloads import WORKLOADS

    workload = WORKLOADS.get(record.task)
    if workload is None or record.metrics is None:
        return None
    value = getattr(record.metrics, workload.primary, None)
    return (workload.primary_metric(), value) if value is not None else None


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
    workload: dict[str, Any] = {}  # the validated `workload:` section
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
    # One-off costs (load, first call, and what the backend declares: compile, export, session, …) in seconds.
    cold_costs: dict[str, NonNegativeFloat] = {}
    memory: MemoryMetrics | None = None  # of the measured phase
    warmup_calls: int | None = None
    measured_time_s: float | None = None  # wall time of the measured phase
    metrics: SerializeAsAny[WorkloadMetrics] | None = None  # the workload's own Metrics model (WORKLOADS[task])
    # Analytic FLOPs/bytes of the measured units, achieved rates, fraction of the device's ceilings (bench.roofline).
    roofline: Roofline | None = None
    # Serving load tests (bench.serving): one record per load level, plus the point's summary ("@max").
    serving: ServingLevel | None = None
    telemetry: Telemetry | None = None  # energy, power, clocks, throttling of the measured phase (measure.telemetry)

    @model_validator(mode="before")
    @classmethod
    def _workload_metrics(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = upgrade(data)
        metrics = data.get("metrics")
        if metrics is None:
            return data
        from bench.workloads import EXTRA_ENV, WORKLOADS

        workload = WORKLOADS.get(data.get("task"))
        if workload is None:
            raise ValueError(
                f"task {data.get('task')!r} has no registered workload to read its metrics with "
                f"(known: {', '.join(WORKLOADS)}; extra workloads: {EXTRA_ENV})"
            )
        if isinstance(metrics, BaseModel):
            if type(metrics) is workload.Metrics:
                return data
            metrics = metrics.model_dump()
        return {**data, "metrics": workload.Metrics.model_validate(metrics)}

    @model_validator(mode="after")
    def _declared_cold_costs(self) -> Record:
        if not self.cold_costs:
            return self
        from bench.backends import BACKENDS

        declared = {c.name for c in RUN_COLD_COSTS}
        backend = BACKENDS.get(self.backend)
        declared |= {c.name for c in backend.cold_costs} if backend is not None else set()
        undeclared = sorted(set(self.cold_costs) - declared)
        if undeclared:
            raise ValueError(
                f"cold cost(s) {', '.join(undeclared)} not declared by backend {self.backend!r} "
                f"(declared: {', '.join(sorted(declared))})"
            )
        return self


V1_COLD_COSTS = ("load_s", "first_call_s", "compile_s", "export_s", "quantize_s", "session_s")


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record (one `Metrics` union with `throughput`, `memory` and cold costs inside) in the
    current shape; a current record unchanged. Old run directories stay readable; nothing is rewritten."""
    if data.get("schema_version", SCHEMA_VERSION) >= 2:
        return data
    data = {k: v for k, v in data.items() if k not in ("prompt_tokens", "new_tokens")}
    data["schema_version"] = SCHEMA_VERSION
    old = data.get("metrics")
    if old is not None:
        m = dict(old)
        data["memory"] = m.pop("memory", None)
        data["warmup_calls"] = m.pop("warmup_calls", None)
        data["measured_time_s"] = m.pop("measured_time_s", None)
        cold = {k: m.pop(k, None) for k in V1_COLD_COSTS}
        data["cold_costs"] = {k: v for k, v in cold.items() if v is not None}
        m.update(m.pop("throughput", None) or {})
        data["metrics"] = {k: v for k, v in m.items() if v is not None}
    return data


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# JSONL storage lives in bench.store (integrity, side files, the directory lock); re-exported here.
from bench.store import append_record, append_records, read_records, write_json  # noqa: E402,F401
