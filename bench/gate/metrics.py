"""Which record metrics the gate compares, in which direction, and how each is read from one repeat.

The workload metrics come from the workload registry: every `Metric(gated=True)` a workload declares
(bench.workloads.metrics), by its name in the record's `metrics`; memory peaks (`memory.*`) are common to all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from bench.gate.stats import MetricRule, Repeat, call_statistic
from bench.measure.stats import PERCENTILES
from bench.results import Record


@dataclass(frozen=True)
class GateMetric:
    name: str  # a field of the record's `metrics`, or a dotted path from the record (memory.host_rss_peak_bytes)
    kind: Literal["time", "rate", "memory", "energy", "serving"]  # memory has its own tolerance (memory_threshold)
    higher_is_better: bool
    unit: str  # s, tokens/s, images/s, bytes, J/token, req/s
    rule: MetricRule
    what: str  # one line for the README and the report's legend

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def rule_at(self, quantile: float, pooled: bool = False) -> MetricRule:
        """This metric's rule with the gate's statistic (memory peaks have none): the `quantile` of each repeat's
        calls, or of all the side's calls together when `pooled`."""
        return self.rule if self.rule.statistic == "value" else replace(self.rule, quantile=quantile, pooled=pooled)


def _time(name: str, what: str) -> GateMetric:
    return GateMetric(name, "time", False, "s", MetricRule(name, "quantile", name), what)


def _rate(name: str, source: str, what: str, unit: str = "tokens/s") -> GateMetric:
    return GateMetric(name, "rate", True, unit, MetricRule(name, "rate", source), what)


def _memory(name: str, what: str) -> GateMetric:
    return GateMetric(name, "memory", False, "bytes", MetricRule(name, "value"), what)


def workload_gate_metrics(workload: Any) -> list[GateMetric]:
    """The metrics a workload's gate compares by default (its `Metric(gated=True)` fields), in declared order."""
    out = []
    for info in workload.Metrics.metric_infos.values():
        if not info.gated:
            continue
        if info.distribution:
            out.append(
                GateMetric(
                    info.name,
                    "time",
                    info.higher_is_better,
                    info.unit,
                    MetricRule(info.name, "quantile", info.name),
                    info.what,
                )
            )
        else:
            out.append(_rate(info.name, info.rate_of, info.what, info.unit))
    return out


def _workload_metrics() -> list[GateMetric]:
    """Every registered workload's gated metrics, first declaration of a name kept (latency_s is shared)."""
    from bench.workloads import WORKLOADS

    seen: dict[str, GateMetric] = {}
    for workload in WORKLOADS.values():
        for metric in workload_gate_metrics(workload):
            seen.setdefault(metric.name, metric)
    return list(seen.values())


GATE_METRICS: tuple[GateMetric, ...] = (
    *_workload_metrics(),
    # serving (bench.serving): one value per level / point record, read as recorded
    GateMetric(
        "serving.attainment.goodput_per_s",
        "serving",
        True,
        "req/s",
        MetricRule("serving.attainment.goodput_per_s", "value"),
        "serving level: requests/s within every SLO at that offered rate",
    ),
    GateMetric(
        "serving.max_sustainable_rate_per_s",
        "serving",
        True,
        "req/s",
        MetricRule("serving.max_sustainable_rate_per_s", "value"),
        "serving point: the highest offered rate that met the SLO",
    ),
    _memory("memory.host_rss_peak_bytes", "peak RSS of the run's process"),
    _memory("memory.cuda_allocated_peak_bytes", "torch's peak allocated CUDA memory"),
    _memory("memory.cuda_reserved_peak_bytes", "torch's peak reserved CUDA memory"),
    _memory("memory.nvml_process_peak_bytes", "NVML's peak device memory of the run's process"),
    GateMetric(
        "telemetry.energy.per_unit.output_token_j",
        "energy",
        False,
        "J/token",  # read from the record
        MetricRule("telemetry.energy.per_unit.output_token_j", "value"),
        "energy per output token (telemetry)",
    ),
)
METRICS_BY_NAME = {m.name: m for m in GATE_METRICS}


def lookup(record: Any, path: str) -> Any:
    """A gated metric of a record by its name: a field of `record.metrics` (output_tokens_per_s), else a dotted
    path from the record (memory.host_rss_peak_bytes); None where any part is missing."""
    metrics = record.metrics
    if metrics is not None and path in type(metrics).model_fields:
        return getattr(metrics, path)
    value = record
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


@dataclass
class RepeatReading:
    """One ok record read for the gate: the bootstrap's view plus what the report should say about it."""

    repeat: Repeat
    sample_counts: dict[str, int]  # per time metric: calls measured (Stats.count)
    summary_only: set[str]  # time metrics (and rate sources) whose raw samples were not stored
    pair: str | None = None  # the record's round of an interleaved sweep (bench ab), if it was one


def summary_statistic(stats: Any, quantile: float) -> float | None:
    """The statistic from a stored summary when the raw samples were not kept: only the percentiles it has."""
    name = next((k for k, pct in PERCENTILES.items() if pct == round(quantile * 100, 6)), None)
    return getattr(stats, name) if name else None


def read_repeat(record: Record, metrics: list[GateMetric], quantile: float = 0.5) -> RepeatReading:
    """Per-repeat values of every metric this record has, time metrics at `quantile` of the calls and rates
    at that same quantile of their source (a metric it lacks, or cannot give at that statistic, is absent)."""
    m = record
    calls: dict[str, np.ndarray] = {}
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    summary_only: set[str] = set()

    def source_statistic(name: str) -> float | None:
        stats = lookup(m, name)
        if stats is None:
            return None
        if stats.samples and len(stats.samples) == stats.count:
            calls[name] = np.asarray(stats.samples, dtype=float)
            return float(call_statistic(calls[name], quantile))
        summary_only.add(name)
        return summary_statistic(stats, quantile)

    for metric in metrics:
        if metric.kind == "time":
            stats = lookup(m, metric.name)
            if stats is None:
                continue
            counts[metric.name] = stats.count
            value = source_statistic(metric.name)
            if value is not None:
                values[metric.name] = value
        elif metric.kind == "rate":
            recorded, source = lookup(m, metric.name), metric.rule.source
            source_stats = lookup(m, source) if source else None
            at = source_statistic(source) if source_stats is not None else None
            if isinstance(recorded, (int, float)) and recorded > 0 and at:  # batch × tokens / statistic
                values[metric.name] = float(recorded) * source_stats.mean / at
        else:
            value = lookup(m, metric.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[metric.name] = float(value)
    return RepeatReading(Repeat(calls=calls, values=values), counts, summary_only, record.pair)
