"""Which record metrics the gate compares, in which direction, and how each is read from one repeat.

A metric the records gain later (an encoder's sequences/s, a diffusion workload's images/s) becomes
gated by adding one line to GATE_METRICS.
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
    name: str  # dotted path inside the record's `metrics`
    kind: Literal["time", "rate", "memory", "energy"]  # memory has its own tolerance (memory_threshold)
    higher_is_better: bool
    unit: Literal["s", "tokens/s", "bytes", "J/token"]
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


def _rate(name: str, source: str, what: str) -> GateMetric:
    return GateMetric(name, "rate", True, "tokens/s", MetricRule(name, "rate", source), what)


def _memory(name: str, what: str) -> GateMetric:
    return GateMetric(name, "memory", False, "bytes", MetricRule(name, "value"), what)


GATE_METRICS: tuple[GateMetric, ...] = (
    _time("latency_s", "latency of a call at the gate's statistic (p10 of all calls of all repeats by default)"),
    _time("ttft_s", "time to first token at the gate's statistic"),
    _time("tpot_s", "time per output token at the gate's statistic"),
    _rate("throughput.output_tokens_per_s", "latency_s", "output tokens/s at that latency (batch × new tokens / it)"),
    _rate("throughput.prefill_tokens_per_s", "ttft_s", "prefill tokens/s at that TTFT (batch × prompt tokens / it)"),
    _rate("throughput.decode_tokens_per_s", "tpot_s", "decode tokens/s at that TPOT (batch / it)"),
    _memory("memory.host_rss_peak_bytes", "peak RSS of the run's process"),
    _memory("memory.cuda_allocated_peak_bytes", "torch's peak allocated CUDA memory"),
    _memory("memory.cuda_reserved_peak_bytes", "torch's peak reserved CUDA memory"),
    _memory("memory.nvml_process_peak_bytes", "NVML's peak device memory of the run's process"),
    GateMetric("telemetry.energy.per_unit.output_token_j", "energy", False, "J/token",  # read from the record
               MetricRule("telemetry.energy.per_unit.output_token_j", "value"), "energy per output token (telemetry)"),
)
METRICS_BY_NAME = {m.name: m for m in GATE_METRICS}


def lookup(metrics: Any, path: str) -> Any:
    """metrics.throughput.output_tokens_per_s by its dotted name; None where any part is missing."""
    value = metrics
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
    m = record.metrics
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
            value = lookup(record if metric.kind == "energy" else m, metric.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[metric.name] = float(value)
    return RepeatReading(Repeat(calls=calls, values=values), counts, summary_only, record.pair)
