"""Records → points: the repeats of one matrix point (scenario, model, weights, task, device, backend,
precision, batch size, workload, backend options) in one run directory, aggregated, and each point's baseline.
Scalars: mean over ok repeats; distributions: raw samples pooled (docs/reports.md, "Repeats")."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.errors import BenchInputError
from bench.measure.stats import Stats
from bench.results import Record, primary_throughput
from bench.summary import lifetime_peak_bytes, peak_memory_bytes
from bench.workloads import WORKLOADS
from bench.workloads.metrics import MetricInfo, WorkloadMetrics


@dataclass(frozen=True)
class PointKey:
    scenario: str
    model: str
    weights: str
    task: str
    device: str
    backend: str
    precision: str
    batch_size: int
    workload: str  # canonical JSON of the record's workload dict, so the key is hashable
    backend_options: str
    serving: str = ""  # serving records: policy / level kind / offered rate (one point per load level)

    @classmethod
    def of(cls, r: Record, by_scenario: bool = True) -> "PointKey":
        """`by_scenario=False`: what the point measures, whatever scenario file named it (scenario "")."""
        s = r.serving
        return cls(
            scenario=r.scenario if by_scenario else "",
            model=r.model,
            weights=r.weights,
            task=r.task,
            device=r.device,
            backend=r.backend,
            precision=r.precision,
            batch_size=r.batch_size,
            workload=_canonical(r.workload),
            backend_options=_canonical(r.backend_options),
            serving=f"{s.policy}/{s.kind}/{s.requested_rate_per_s}" if s is not None else "",
        )

    def replace(self, **changes: Any) -> "PointKey":
        return PointKey(**{**self.__dict__, **changes})


def measured(r: Record) -> bool:
    """A record that measured: status ok with the workload's metrics, or a serving level's or point's
    figures (its `serving` section; `metrics` stays empty there)."""
    return r.status == "ok" and (r.metrics is not None or r.serving is not None)


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Point:
    key: PointKey
    records: list[Record] = field(default_factory=list)  # every repeat, whatever its status
    run: str = ""  # label of the run directory it was read from (the report's points are per run)
    _pooled: dict[str, Stats] = field(default_factory=dict, repr=False)

    @property
    def first(self) -> Record:
        return self.records[0]

    @property
    def ok(self) -> list[Record]:
        return [r for r in self.records if measured(r)]

    @property
    def status(self) -> str:
        """ok when any repeat measured; otherwise the first repeat's status (failed, unsupported, timeout)."""
        return "ok" if self.ok else self.first.status

    @property
    def invalid_reasons(self) -> list[str]:
        """Why some repeat's measurement is too noisy to trust (empty when every ok repeat is valid)."""
        reasons = []
        for r in self.ok:
            if r.valid is False:
                which = f"repeat {r.repeat}: " if len(self.records) > 1 else ""
                reasons.extend(which + reason for reason in r.invalid_reasons or ["marked invalid without a reason"])
        return _unique(reasons)

    @property
    def errors(self) -> list[str]:
        """Reasons of the repeats that did not measure, each with its status."""
        return _unique(f"{r.status}: {r.error or 'no reason recorded'}" for r in self.records if not measured(r))

    @property
    def notes(self) -> list[str]:
        notes = []
        failed = len(self.records) - len(self.ok)
        if self.ok and failed:
            notes.append(f"{failed} of {len(self.records)} repeats did not measure")
        if len(self.ok) > 1 and not self._samples_complete():
            notes.append("percentiles averaged over repeats (raw samples not stored)")
        return notes

    @property
    def throughput(self) -> float | None:
        values = [tp[1] for tp in map(primary_throughput, self.ok) if tp is not None]
        return _mean(values)

    @property
    def throughput_metric(self) -> MetricInfo | None:
        workload = WORKLOADS.get(self.key.task)
        return workload.primary_metric() if workload is not None else None

    @property
    def peak_memory_bytes(self) -> float | None:
        """Peak during the measured phase (bench.summary.peak_memory_bytes), mean over the ok repeats."""
        return _mean([v for v in map(peak_memory_bytes, self.ok) if v])

    @property
    def lifetime_peak_bytes(self) -> float | None:
        """Peak over the worker's whole life (load, export, compile included), mean over the ok repeats."""
        return _mean([v for v in map(lifetime_peak_bytes, self.ok) if v])

    @property
    def valid(self) -> bool:
        return self.status == "ok" and not self.invalid_reasons

    def per_repeat(self, get: Callable[[Record], Any]) -> list[float]:
        """One value per ok repeat that has it (for intervals between repeats)."""
        return [float(v) for v in map(get, self.ok) if v is not None]

    @property
    def scenarios(self) -> list[str]:
        return _unique(r.scenario for r in self.records)

    def metric(self, get: Callable[[WorkloadMetrics], Any]) -> float | None:
        """Mean over the ok repeats of a scalar metric; None when no repeat has it."""
        return self.value(lambda r: get(r.metrics))

    def value(self, get: Callable[[Record], Any]) -> float | None:
        """Mean over the ok repeats of a scalar record field (fidelity, weight bytes); None when none has it."""
        values = []
        for r in self.ok:
            value = get(r)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{type(value).__name__} is not a number: point the column at one of its fields")
            values.append(float(value))
        return _mean(values)

    def stat(self, name: str, which: str) -> float | None:
        """A summary (p50, p99, mean, …) of distribution `name` (latency_s, ttft_s, …) over the repeats."""
        stats = [s for s in (getattr(r.metrics, name, None) for r in self.ok) if s is not None]
        if not stats:
            return None
        if len(stats) == 1:
            return getattr(stats[0], which)
        pooled = self.pooled(name)
        if pooled is not None:
            return getattr(pooled, which)
        return _mean([getattr(s, which) for s in stats])

    def samples(self, name: str) -> list[float]:
        """The raw samples of every ok repeat, pooled (empty when none were stored)."""
        return [x for r in self.ok if (s := getattr(r.metrics, name, None)) is not None for x in s.samples]

    def pooled(self, name: str) -> Stats | None:
        if not self._samples_complete(name):
            return None
        if name not in self._pooled:
            self._pooled[name] = Stats.of(self.samples(name))
        return self._pooled[name]

    def _samples_complete(self, name: str = "latency_s") -> bool:
        stats = [getattr(r.metrics, name, None) for r in self.ok]
        return bool(stats) and all(s is not None and s.count and len(s.samples) == s.count for s in stats)


def group_points(records: list[Record], by_scenario: bool = True, run: str = "") -> list[Point]:
    """Points in the order their first record appears. `by_scenario=False` (the report): records of
    different scenario files that measure the same thing are repeats of one point."""
    points: dict[PointKey, Point] = {}
    for r in records:
        key = PointKey.of(r, by_scenario)
        points.setdefault(key, Point(key, run=run)).records.append(r)
    return list(points.values())


class Baselines:
    """Finds each point's baseline among the points of every run directory given: the point with the same
    identity and the baseline's fields swapped in, from the same run directory where it measured there,
    else from the first other run directory (in the order given) where it did."""

    def __init__(self, points: list[Point], baseline: dict[str, Any]):
        self.baseline = baseline
        self._by_key: dict[PointKey, list[Point]] = {}
        for p in points:
            self._by_key.setdefault(p.key, []).append(p)

    def is_baseline(self, point: Point) -> bool:
        return baseline_key(point, self.baseline) == point.key

    def of(self, point: Point) -> Point | None:
        """The measured baseline point, or None (none measured anywhere). Backend options belong to their
        backend: when the baseline is another backend, a point's options (compile's `generation: loop`, say)
        say nothing about the baseline's, so any options of that backend match, its defaults first."""
        key = baseline_key(point, self.baseline)
        candidates = [p for p in self._by_key.get(key, []) if p.status == "ok"]
        if not candidates and key.backend != point.key.backend:
            defaults = _canonical({})
            candidates = sorted(
                (
                    p
                    for k, ps in self._by_key.items()
                    if k.replace(backend_options=key.backend_options) == key
                    for p in ps
                    if p.status == "ok"
                ),
                key=lambda p: p.key.backend_options != defaults,
            )
        same_run = [p for p in candidates if p.run == point.run]
        return (same_run or candidates or [None])[0]

    def missing(self, point: Point) -> PointKey:
        return baseline_key(point, self.baseline)


# --- baseline ---------------------------------------------------------------------------------------------

DEFAULT_BASELINE: dict[str, Any] = {"precision": "fp32", "backend": "eager"}
BASELINE_KEYS = ("backend", "precision", "batch_size")  # the point fields --baseline may set


def parse_baseline(args: list[str], records: list[Record]) -> dict[str, Any]:
    """--baseline KEY=VALUE... on top of the default (fp32 eager); values must occur in the records."""
    baseline = dict(DEFAULT_BASELINE)
    seen: set[str] = set()
    for arg in args:
        key, sep, value = arg.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise BenchInputError("--baseline", f"{arg!r} is not KEY=VALUE (keys: {', '.join(BASELINE_KEYS)})")
        if key not in BASELINE_KEYS:
            raise BenchInputError("--baseline", f"unknown key; use one of {', '.join(BASELINE_KEYS)}", key)
        if key in seen:
            raise BenchInputError("--baseline", "given twice", key)
        seen.add(key)
        if key == "batch_size":
            if not value.isdigit() or int(value) < 1:
                raise BenchInputError("--baseline", f"{value!r} is not a positive integer", key)
            value = int(value)
        present = sorted({getattr(r, key) for r in records}, key=str)
        if value not in present:
            raise BenchInputError(
                "--baseline", f"no record has {key} {value!r} (present: {', '.join(map(str, present))})", key
            )
        baseline[key] = value
    return baseline


def _host(r: Record) -> str | None:
    """The node an executor ran the record on when it says (Ray: details.node), else None (this machine)."""
    return (r.details.get("node") or {}).get("hostname")


def device_labels(records: list[Record]) -> list[str]:
    """ "cuda:0 (NVIDIA H100 80GB HBM3)" per device, in order, with " on HOST" when an executor ran records on
    other nodes (Ray); a failed run's record may lack the name."""
    names: dict[tuple[str, str | None], list[str]] = {}
    for r in records:
        known = names.setdefault((r.device, _host(r)), [])
        if r.device_name and r.device_name not in known:
            known.append(r.device_name)
    return [
        (f"{device} ({', '.join(n)})" if n else device) + (f" on {host}" if host else "")
        for (device, host), n in names.items()
    ]


def device_note(records: list[Record]) -> str | None:
    """Said when the records ran on several device models or nodes: timings compare only on the same model."""
    models = sorted({r.device_name for r in records if r.device_name})
    hosts = sorted({h for r in records if (h := _host(r))})
    if len(models) > 1:
        return (
            f"These points ran on {len(models)} device models ({', '.join(models)}): compare timings only "
            "between points measured on the same model."
        )
    if len(hosts) > 1:
        model = models[0] if models else "one device model"
        return f"These points ran on {len(hosts)} nodes ({', '.join(hosts)}), all on {model}."
    return None


def workload_label(workload: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in workload.items()) or "default workload"


def describe_baseline(baseline: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in baseline.items())


def baseline_key(point: Point, baseline: dict[str, Any]) -> PointKey:
    """The point this one is compared with: the same point with the baseline's fields swapped in."""
    return point.key.replace(**baseline)


def speedup(point: Point, base: Point | None) -> float | None:
    """Point throughput / baseline throughput (both repeat means)."""
    if base is None or point.throughput is None or not base.throughput:
        return None
    return point.throughput / base.throughput


def memory_saving(point: Point, base: Point | None) -> float | None:
    """1 − point peak memory / baseline peak memory: 0.4 means the point needs 40% less."""
    if base is None or point.peak_memory_bytes is None or not base.peak_memory_bytes:
        return None
    return 1 - point.peak_memory_bytes / base.peak_memory_bytes


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))
