"""Which record metrics the gate compares, in which direction, and how each is read from one repeat.

A metric the records gain later (an encoder's sequences/s, a diffusion workload's images/s) becomes
gated by adding one line to GATE_METRICS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bench.gate.stats import MetricRule, Repeat
from bench.results import Record


@dataclass(frozen=True)
class GateMetric:
    name: str  # dotted path inside the record's `metrics`
    kind: Literal["time", "rate", "memory"]  # memory has its own tolerance (memory_threshold)
    higher_is_better: bool
    unit: Literal["s", "tokens/s", "bytes"]
    rule: MetricRule
    what: str  # one line for the README and the report's legend

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


def _time(name: str, what: str) -> GateMetric:
    return GateMetric(name, "time", False, "s", MetricRule(name, "median", name), what)


def _rate(name: str, source: str, what: str) -> GateMetric:
    return GateMetric(name, "rate", True, "tokens/s", MetricRule(name, "inverse-mean", source), what)


def _memory(name: str, what: str) -> GateMetric:
    return GateMetric(name, "memory", False, "bytes", MetricRule(name, "value"), what)


GATE_METRICS: tuple[GateMetric, ...] = (
    _time("latency_s", "median latency of a call, mean over repeats"),
    _time("ttft_s", "median time to first token, mean over repeats"),
    _time("tpot_s", "median time per output token, mean over repeats"),
    _rate("throughput.output_tokens_per_s", "latency_s", "output tokens/s (batch × new tokens / mean latency)"),
    _rate("throughput.prefill_tokens_per_s", "ttft_s", "prefill tokens/s (batch × prompt tokens / mean TTFT)"),
    _rate("throughput.decode_tokens_per_s", "tpot_s", "decode tokens/s (batch / mean TPOT)"),
    _memory("memory.host_rss_peak_bytes", "peak RSS of the run's process"),
    _memory("memory.cuda_allocated_peak_bytes", "torch's peak allocated CUDA memory"),
    _memory("memory.cuda_reserved_peak_bytes", "torch's peak reserved CUDA memory"),
    _memory("memory.nvml_process_peak_bytes", "NVML's peak device memory of the run's process"),
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
    summary_only: set[str]  # time metrics whose raw samples were not stored: no within-run resampling


def read_repeat(record: Record, metrics: list[GateMetric]) -> RepeatReading:
    """Per-repeat values of every metric this record has (a metric it lacks is simply absent)."""
    m = record.metrics
    calls: dict[str, np.ndarray] = {}
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    summary_only: set[str] = set()
    for metric in metrics:
        if metric.kind == "time":
            stats = lookup(m, metric.name)
            if stats is None:
                continue
            counts[metric.name] = stats.count
            if stats.samples and len(stats.samples) == stats.count:
                calls[metric.name] = np.asarray(stats.samples, dtype=float)
                values[metric.name] = float(np.median(calls[metric.name]))
            else:
                summary_only.add(metric.name)
                values[metric.name] = float(stats.p50)
        else:
            value = lookup(m, metric.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[metric.name] = float(value)
    # sources of rates (their samples) even when the time metric itself is disabled
    for metric in metrics:
        source = metric.rule.source
        if metric.kind == "rate" and source and source not in calls:
            stats = lookup(m, source)
            if stats is not None and stats.samples and len(stats.samples) == stats.count:
                calls[source] = np.asarray(stats.samples, dtype=float)
    return RepeatReading(Repeat(calls=calls, values=values), counts, summary_only)
