"""The report's tables: the flat per-record frame (results.csv), each scenario's points with their ratios to
the baseline, the side-by-side comparison of run directories, and the environments.

Tables hold display strings; render.py turns them into markdown or HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.precisions import PRECISIONS
from bench.report.points import Baselines, Point, device_labels, primary_throughput, speedup, workload_label
from bench.report.runs import Run
from bench.results import RUN_COLD_COSTS
from bench.roofline.schema import NO_STORED_CALIBRATION
from bench.summary import fmt_bytes, fmt_seconds, peak_memory_bytes
from bench.workloads import WORKLOADS

INVALID = "⚠"  # marks a point whose measurement the record itself calls too noisy to trust
MISSING = "-"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)  # lines printed under the table


# --- formatting -------------------------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f}" if value >= 1 else f"{value:.3g}"


def fmt_ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}×"


def fmt_saving(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.1%}"


def fmt_number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}"


def fmt_percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def fmt_si(value: float | None, unit: str = "") -> str:
    """Decimal prefixes, as bandwidths and FLOP rates are quoted: 1.39 GB/s, 22.1 GFLOP."""
    if value is None:
        return MISSING
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


# --- the flat frame: one row per record ----------------------------------------------------------------------


def records_frame(runs: list[Run]) -> pd.DataFrame:
    """Every record of every run as one flat row (raw samples left out: they are lists, not columns).

    Columns follow the schema (nested fields joined with '.'), so a metric added to the record shows up
    here without a change; `peak_memory_bytes` and `primary_throughput*` are the figures the report uses.
    """
    rows = []
    for run in runs:
        for r in run.records:
            data = r.model_dump(exclude={"metrics"})  # (cold costs and memory flatten as cold_costs.X, memory.X)
            data["invalid_reasons"] = "; ".join(r.invalid_reasons)
            data["warnings"] = "; ".join(r.warnings)
            row = {"run": run.label, "run_dir": str(run.path), **_flatten(data)}
            if r.metrics is not None:
                row.update(_flatten({"metrics": _without_samples(r.metrics.model_dump())}))
            tp = primary_throughput(r)
            row["primary_throughput_metric"] = tp[0].name if tp else None
            row["primary_throughput"] = tp[1] if tp else None
            row["peak_memory_bytes"] = peak_memory_bytes(r)
            rows.append(row)
    return pd.DataFrame(rows)


def write_csv(runs: list[Run], path: Path) -> pd.DataFrame:
    frame = records_frame(runs)
    frame.to_csv(path, index=False)
    return frame


def _without_samples(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_samples(v) for k, v in data.items() if k != "samples"}
    return data


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, dict):
            flat[name] = None
        elif isinstance(value, list):
            flat[name] = "; ".join(map(str, value))
        else:
            flat[name] = value
    return flat


# --- the points table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricColumn:
    """One metric column of the points table; shown only when some point has a value for it."""

    header: str
    value: Callable[[Point], float | None]
    fmt: Callable[[float | None], str]
    label: Callable[[Point], str | None] | None = None  # shown beside a value: what produced it

    def cell(self, p: Point) -> str:
        value, label = self.value(p), self.label(p) if self.label is not None else None
        return f"{self.fmt(value)} ({label})" if value is not None and label else self.fmt(value)


def _stat(name: str, which: str) -> Callable[[Point], float | None]:
    return lambda p: p.stat(name, which)


def cache_hit(record, name: str) -> bool:
    """Whether cold cost `name` (export_s) was skipped because its cache was hit (details `export_cache`)."""
    return record.details.get(f"{name.removesuffix('_s')}_cache") == "hit"


@dataclass(frozen=True)
class ColdCostColumn:
    """A cold cost: seconds, or "cached" when every repeat that has it hit its cache (not "0 us")."""

    header: str
    name: str

    def value(self, p: Point) -> float | None:
        return p.value(lambda r: r.cold_costs.get(self.name))

    def cell(self, p: Point) -> str:
        hits = [cache_hit(r, self.name) for r in p.ok if self.name in r.cold_costs]
        if hits and all(hits):
            return "cached"
        text = fmt_seconds(self.value(p))
        return f"{text} (cache hit in {sum(hits)} of {len(hits)})" if any(hits) else text


def _fidelity(field: str) -> Callable[[Point], float | None]:
    return lambda p: p.value(lambda r: getattr(r.fidelity, field) if r.fidelity is not None else None)


def _efficiency(source: str, phase: str | None = None) -> Callable[[Point], float | None]:
    """Fraction of the roofline ceiling (bench.roofline) of the record's primary unit of work, or `phase`."""
    return lambda p: p.value(lambda r: r.roofline.efficiency(source, phase) if r.roofline is not None else None)


def _generation_loop(p: Point) -> str | None:
    """Which loop generated a point's tokens (compile: HF `generate` or the decode loop), as its records say."""
    loops = {r.details.get("generation") for r in p.ok if r.details} - {None}
    return ", ".join(sorted(loops)) or None


def workload_columns(points: list[Point]) -> list[MetricColumn]:
    """The columns the points' workloads declare (`Workload.report_columns`), in registry order."""
    tasks = {p.key.task for p in points}
    columns: dict[str, MetricColumn] = {}
    for task, workload in WORKLOADS.items():
        for c in workload.report_columns if task in tasks else ():
            value = (
                _stat(c.metric, c.statistic)
                if c.statistic
                else (lambda p, m=c.metric: p.metric(lambda metrics: getattr(metrics, m, None)))
            )
            unit = workload.Metrics.metric_infos[c.metric].unit
            columns.setdefault(c.header, MetricColumn(c.header, value, fmt_seconds if unit == "s" else fmt_rate))
    return list(columns.values())


def cold_cost_columns() -> list[ColdCostColumn]:
    """One column per cold cost a backend declares with a `column` header (export, compile)."""
    from bench.backends import BACKENDS

    costs = [*RUN_COLD_COSTS, *(c for b in BACKENDS.values() for c in b.cold_costs)]
    headers = dict.fromkeys((c.column, c.name) for c in costs if c.column)
    return [ColdCostColumn(header, name) for header, name in headers]


# Adding a metric to the report is one entry here (a workload's own: Workload.report_columns); a column
# appears when some point has a value for it.
def fmt_gap(value: float | None) -> str:
    """1 − cosine in scientific notation: int8's 4.0e-07 and fp32's 0 apart (a cosine 0.9999996 prints as 1)."""
    if value is None:
        return MISSING
    return "0" if value <= 0 else f"{value:.1e}"


def _one_minus_cosine(p: Point) -> float | None:
    cosine = p.value(lambda r: r.fidelity.cosine_mean if r.fidelity is not None else None)
    return None if cosine is None else 1 - cosine


FIDELITY = MetricColumn("fidelity (cosine)", _fidelity("cosine_mean"), lambda v: MISSING if v is None else f"{v:.9g}")
ONE_MINUS_COSINE = MetricColumn("1 − cosine", _one_minus_cosine, fmt_gap)
COMMON_COLUMNS: tuple[MetricColumn, ...] = (
    MetricColumn("latency p50", _stat("latency_s", "p50"), fmt_seconds),
    MetricColumn("latency p99", _stat("latency_s", "p99"), fmt_seconds),
    MetricColumn("efficiency", _efficiency("calibrated"), fmt_percent, _generation_loop),
    MetricColumn("efficiency (datasheet)", _efficiency("datasheet"), fmt_percent, _generation_loop),
    MetricColumn("prefill efficiency", _efficiency("calibrated", "prefill"), fmt_percent),
    MetricColumn("peak memory", lambda p: p.peak_memory_bytes, lambda b: fmt_bytes(round(b) if b else None)),
    MetricColumn("whole-life peak", lambda p: p.lifetime_peak_bytes, lambda b: fmt_bytes(round(b) if b else None)),
    MetricColumn("weights", lambda p: p.value(lambda r: r.weight_bytes), lambda b: fmt_bytes(round(b) if b else None)),
)
FIDELITY_COLUMNS = (
    ONE_MINUS_COSINE,
    FIDELITY,
    MetricColumn("token agreement", _fidelity("token_agreement"), fmt_number),
)


def metric_columns(points: list[Point]) -> list[MetricColumn]:
    """Every metric column the points table may show, in order (shown when some point has a value)."""
    return [*workload_columns(points), *COMMON_COLUMNS, *cold_cost_columns(), *FIDELITY_COLUMNS]


def throughput_column(points: list[Point]) -> MetricColumn:
    """The throughput column, headed by the unit of the points' task (tokens/s, sequences/s, …)."""
    units = sorted({m.unit for m in (p.throughput_metric for p in points) if m is not None})
    return MetricColumn(" | ".join(units) or "throughput", lambda p: p.throughput, fmt_rate)


def sort_points(points: list[Point]) -> list[Point]:
    def order(p: Point) -> tuple:
        k = p.key
        rank = PRECISIONS.index(k.precision) if k.precision in PRECISIONS else len(PRECISIONS)
        return (k.backend, rank, k.precision, k.batch_size, k.device, k.workload, k.backend_options, k.weights)

    return sorted(points, key=order)


# Point-key fields that get a column only when they differ between the rows of one table (a scenario
# resumed on another device, two workloads); otherwise the section's heading already says them.
EXTRA_KEY_COLUMNS: tuple[tuple[str, Callable[[Point], str]], ...] = (
    ("device", lambda p: p.key.device),
    ("weights", lambda p: p.key.weights),
    ("workload", lambda p: workload_label(p.first.workload)),
    ("backend options", lambda p: p.key.backend_options),
)


def key_columns(points: list[Point]) -> list[tuple[str, Callable[[Point], str]]]:
    fixed: list[tuple[str, Callable[[Point], str]]] = [
        ("backend", lambda p: p.key.backend),
        ("precision", lambda p: p.key.precision),
        ("batch", lambda p: str(p.key.batch_size)),
    ]
    return fixed + [(name, get) for name, get in EXTRA_KEY_COLUMNS if len({get(p) for p in points}) > 1]


def status_cell(point: Point) -> str:
    return f"{point.status} {INVALID}" if point.invalid_reasons else point.status


def note_cell(point: Point) -> str:
    parts = [f"{INVALID} invalid: {reason}" for reason in point.invalid_reasons]
    parts += point.errors
    parts += point.notes
    return " ".join("; ".join(parts).split())


def ratio_cells(p: Point, baselines: Baselines) -> list[str]:
    """speedup and memory ratio against the point's baseline; "baseline" for the baseline itself; a ⚠ when
    the baseline's own measurement is invalid."""
    if baselines.is_baseline(p):
        return ["baseline", "baseline"]
    base = baselines.of(p)
    mark = f" {INVALID} invalid baseline" if base is not None and base.invalid_reasons else ""
    cells = [fmt_ratio(speedup(p, base)), fmt_ratio(memory_ratio(p, base))]
    return [c + mark if c != MISSING else c for c in cells]


def memory_ratio(point: Point, base: Point | None) -> float | None:
    """Point measured-phase peak / baseline's: 0.6× needs 40% less."""
    if base is None or point.peak_memory_bytes is None or not base.peak_memory_bytes:
        return None
    return point.peak_memory_bytes / base.peak_memory_bytes


def _missing_baselines(points: list[Point], baselines: Baselines) -> list[str]:
    missing = []
    for p in points:
        if p.status == "ok" and not baselines.is_baseline(p) and baselines.of(p) is None:
            k = baselines.missing(p)
            missing.append(f"batch {k.batch_size} {k.backend}/{k.precision}")
    return list(dict.fromkeys(missing))


def _baseline_notes(points: list[Point], baselines: Baselines) -> list[str]:
    notes = []
    missing = _missing_baselines(points, baselines)
    if missing:
        notes.append("No measured baseline point for: " + ", ".join(missing) + " (ratios shown as -).")
    elsewhere = sorted({f"{p.run} → {b.run}" for p in points if (b := baselines.of(p)) is not None and b.run != p.run})
    if elsewhere:
        notes.append(
            "Baseline taken from another run directory (none measured in the point's own): "
            + ", ".join(elsewhere)
            + "."
        )
    return notes


def _key_and_run_columns(points: list[Point]) -> list[tuple[str, Callable[[Point], str]]]:
    runs = [("run", lambda p: p.run)] if len({p.run for p in points}) > 1 else []
    return runs + key_columns(points)


def _sorted(points: list[Point]) -> list[Point]:
    order = {run: i for i, run in enumerate(dict.fromkeys(p.run for p in points))}
    return sorted(sort_points(points), key=lambda p: order[p.run])


def main_columns(points: list[Point]) -> list[MetricColumn]:
    """The decision columns: throughput, the workload's p50/p99 columns (latency p50/p99 where it declares
    none), measured-phase peak memory."""
    declared = workload_columns(points)
    own = [c for c in declared if c.header.endswith(("p50", "p99"))] or declared
    latency = [c for c in COMMON_COLUMNS if c.header in ("latency p50", "latency p99")]
    peak = [c for c in COMMON_COLUMNS if c.header == "peak memory"]
    return [throughput_column(points), *(own or latency), *peak]


def _point_rows(points: list[Point], baselines: Baselines, columns: list, fidelity: bool) -> tuple[list, list]:
    """(header, rows) of one row per (sorted) point: keys, status, `columns`, ratios, [1 − cosine], repeats, note."""
    keys = _key_and_run_columns(points)
    show_repeats = any(len(p.records) > 1 for p in points)
    header = [
        *[name for name, _ in keys],
        "status",
        *[c.header for c in columns],
        "speedup",
        "memory ratio",
        *(["1 − cosine"] if fidelity else []),
        *(["repeats"] if show_repeats else []),
        "note",
    ]
    rows = [
        [
            *[get(p) for _, get in keys],
            status_cell(p),
            *[c.cell(p) for c in columns],
            *ratio_cells(p, baselines),
            *([ONE_MINUS_COSINE.fmt(ONE_MINUS_COSINE.value(p))] if fidelity else []),
            *([f"{len(p.ok)}/{len(p.records)}"] if show_repeats else []),
            note_cell(p),
        ]
        for p in points
    ]
    return header, rows


def main_table(points: list[Point], baselines: Baselines) -> Table:
    """One row per point of every run: the columns people decide on; the rest is in points_table."""
    points = _sorted(points)
    columns = [c for c in main_columns(points) if any(c.value(p) is not None for p in points)]
    fidelity = any(ONE_MINUS_COSINE.value(p) is not None for p in points)
    header, rows = _point_rows(points, baselines, columns, fidelity)
    return Table(header, rows, _baseline_notes(points, baselines))


def points_table(points: list[Point], baselines: Baselines) -> Table:
    """Every point of one model/task/device, every metric column some point has, ratios to its baseline,
    status and reasons."""
    points = _sorted(points)
    columns = [
        c for c in (throughput_column(points), *metric_columns(points)) if any(c.value(p) is not None for p in points)
    ]
    header, rows = _point_rows(points, baselines, columns, fidelity=False)
    notes = _baseline_notes(points, baselines)
    if any(
        p.lifetime_peak_bytes and p.peak_memory_bytes and p.lifetime_peak_bytes > 1.05 * p.peak_memory_bytes
        for p in points
    ):
        notes.append(
            "peak memory is the measured phase's; the whole-life peak also holds loading, export, "
            "compile or quantization, which the measured calls do not need."
        )
    return Table(header, rows, notes)


# --- roofline: the work of each point's measured units against the device's ceilings ------------------------


def roofline_table(points: list[Point]) -> Table | None:
    """One row per point and unit of work (decode step, prefill, forward): analytic FLOPs and bytes, what was
    achieved, which bound applies and the fraction of the ceiling (calibrated; datasheet where known).
    None when no point has a roofline section."""
    points = [p for p in sort_points(points) if any(r.roofline is not None and r.roofline.phases for r in p.ok)]
    if not points:
        return None
    keys = key_columns(points)
    sources = [
        s
        for s in ("calibrated", "datasheet")
        if any(s in r.roofline.ceilings for p in points for r in p.ok if r.roofline is not None)
    ]
    header = [
        *[name for name, _ in keys],
        "unit",
        "FLOPs",
        "bytes",
        "FLOP/byte",
        "timed by",
        "achieved FLOP/s",
        "achieved bytes/s",
    ]
    for source in sources:
        header += [f"bound ({source})", f"of ceiling ({source})", f"of bandwidth ({source})"]
    rows = []
    for p in points:
        phases = list(dict.fromkeys(name for r in p.ok if r.roofline is not None for name in r.roofline.phases))
        for name in phases:

            def phase_value(get: Callable[[Any], Any], name: str = name) -> float | None:
                return p.value(  # noqa: B023 (called within this iteration)
                    lambda r: (
                        get(r.roofline.phases[name]) if r.roofline is not None and name in r.roofline.phases else None  # noqa: B023
                    )
                )

            first = next(r.roofline.phases[name] for r in p.ok if r.roofline is not None and name in r.roofline.phases)
            row = [
                *[get(p) for _, get in keys],
                name,
                fmt_si(phase_value(lambda ph: ph.flops)),
                fmt_si(phase_value(lambda ph: ph.bytes), "B"),
                fmt_number(phase_value(lambda ph: ph.arithmetic_intensity_flops_per_byte)),
                first.timed_by,
                fmt_si(phase_value(lambda ph: ph.achieved_flops_per_s), "FLOP/s"),
                fmt_si(phase_value(lambda ph: ph.achieved_bytes_per_s), "B/s"),
            ]
            for source in sources:
                bound = first.bounds.get(source)
                row += [
                    (bound.bound or MISSING) if bound is not None else MISSING,
                    fmt_percent(phase_value(lambda ph, s=source: ph.bounds[s].fraction if s in ph.bounds else None)),
                    fmt_percent(
                        phase_value(lambda ph, s=source: ph.bounds[s].bandwidth_fraction if s in ph.bounds else None)
                    ),
                ]
            rows.append(row)
    notes = []
    records = [r for p in points for r in p.ok if r.roofline is not None]
    for source in ("calibrated", "datasheet"):
        for ceiling in dict.fromkeys(c.model_dump_json() for r in records if (c := r.roofline.ceilings.get(source))):
            notes.append(describe_ceiling(ceiling))
    # Why a run has no calibrated ceiling is said once per run (calibration_notes, under Runs), not per record.
    notes += list(dict.fromkeys(n for r in records for n in r.roofline.notes if not _no_calibration_note(n)))
    if any("calibrated" in r.roofline.ceilings for r in records):
        notes.append(
            "Calibrated ceilings as stored with each record by its run (the calibration of the machine that ran "
            "it), never the calibration of the machine building this report."
        )
    if any("calibrated" not in r.roofline.ceilings for r in records):
        notes.append("No calibrated efficiency where a run stored no calibration: the Runs section says why, per run.")
    if any(r.roofline.computed_at == "report" for r in records):
        notes.append(
            "Records written before the roofline section existed: FLOPs, bytes and achieved rates computed by "
            "bench report from the record and the model's config."
        )
    return Table(header, rows, notes)


def _no_calibration_note(note: str) -> bool:
    return note.startswith(("no calibration for", NO_STORED_CALIBRATION))


def calibration_notes(runs: list[Run]) -> list[str]:
    """One line per run with measured records that have a roofline but no calibrated ceiling: which device
    identity its run stored no calibration for, and that this machine's calibration is not used instead."""
    notes = []
    for run in runs:
        measured = [r for r in run.records if r.status == "ok" and r.roofline is not None and r.roofline.phases]
        missing = [r for r in measured if "calibrated" not in r.roofline.ceilings]
        if not missing:
            continue
        identities = ", ".join(dict.fromkeys(calibration_identity(r) for r in missing))
        notes.append(
            f"`{run.label}`: no calibrated efficiency for {len(missing)} of {len(measured)} measured records: "
            f"the run stored no calibration for {identities} (run `bench calibrate` on the machine that runs the "
            "sweep, before `bench run`). A report never uses the calibration of the machine building it."
        )
    return notes


def calibration_identity(r: Any) -> str:
    """What a calibration is kept per: the device's name (and the torch threads, on a CPU)."""
    if r.device.startswith("cuda"):
        return f"{r.device_name or r.device}"
    return f"{r.device_name or 'cpu'} with {(r.details or {}).get('torch_threads', '?')} torch threads"


def describe_ceiling(ceiling_json: str) -> str:
    from bench.roofline.schema import Ceiling

    c = Ceiling.model_validate_json(ceiling_json)
    peaks = ", ".join(f"{d} {fmt_si(v, 'OP/s' if d == 'int8' else 'FLOP/s')}" for d, v in c.matmul_flops_per_s.items())
    return (
        f"{c.source.capitalize()} ceiling of {c.device_name}: memory {fmt_si(c.memory_bytes_per_s, 'B/s')}"
        f"{'; matmul ' + peaks if peaks else ''} ({c.reference})."
    )


# --- several run directories side by side ----------------------------------------------------------------


def comparison_table(runs: list[Run], points_by_run: list[list[Point]]) -> Table:
    """One row per point, per run its throughput, latency p50 and peak memory, and each later run's ratios
    to the first run. Points are matched on their key (device cuda:0 included) but not the device's name,
    so an A100 run and an H100 run of the same sweep line up."""
    first_label = runs[0].label
    by_run = [{p.key: p for p in points} for points in points_by_run]
    # A representative point per key (the first run that has it) names the row.
    rows_by_key = {p.key: p for points in reversed(points_by_run) for p in points}
    keys = [p.key for p in sort_points(list(rows_by_key.values()))]
    key_cols = key_columns(list(rows_by_key.values()))
    unit = throughput_column([p for points in points_by_run for p in points]).header
    header = [name for name, _ in key_cols]
    for i, run in enumerate(runs):
        header += [f"{run.label} {unit}", f"{run.label} latency p50", f"{run.label} peak memory"]
        if i:
            header += [f"{run.label} speed vs {first_label}", f"{run.label} memory vs {first_label}"]
    rows = []
    for key in keys:
        first = by_run[0].get(key)
        row = [get(rows_by_key[key]) for _, get in key_cols]
        for i, points in enumerate(by_run):
            p = points.get(key)
            row += _run_cells(p)
            if i:
                row += [
                    fmt_ratio(_ratio(p, first, lambda q: q.throughput)),
                    fmt_ratio(_ratio(p, first, lambda q: q.peak_memory_bytes)),
                ]
        rows.append(row)
    notes = [
        f"Ratios are this run / {first_label}: speed above 1× is faster, memory above 1× needs more. "
        f"{INVALID} marks a point some repeat of which is too noisy to trust."
    ]
    return Table(header, rows, notes)


def _run_cells(p: Point | None) -> list[str]:
    if p is None:
        return ["not run", MISSING, MISSING]
    if p.status != "ok":
        return [p.status, MISSING, MISSING]
    mark = f" {INVALID}" if p.invalid_reasons else ""
    return [
        fmt_rate(p.throughput) + mark,
        fmt_seconds(p.stat("latency_s", "p50")),
        fmt_bytes(round(p.peak_memory_bytes) if p.peak_memory_bytes else None),
    ]


def _ratio(p: Point | None, first: Point | None, get: Callable[[Point], float | None]) -> float | None:
    if p is None or first is None:
        return None
    a, b = get(p), get(first)
    return a / b if a is not None and b else None


# --- environments ------------------------------------------------------------------------------------------


def environment_table(runs: list[Run]) -> Table:
    """What each run ran on, one column per run directory (environment.json plus the records' devices)."""
    envs = [r.environment or {} for r in runs]
    fields: list[tuple[str, Callable[[Run, dict[str, Any]], Any]]] = [
        ("directory", lambda run, env: str(run.path)),
        ("date", lambda run, env: env.get("timestamp")),
        ("command", lambda run, env: env.get("command")),
        ("devices (records)", lambda run, env: ", ".join(device_labels(run.records))),
        (
            "GPUs",
            lambda run, env: (
                ", ".join(f"{g.get('name')} ({fmt_bytes(g.get('memory_total_bytes'))})" for g in env.get("gpus") or [])
                or None
            ),
        ),
        ("driver", lambda run, env: env.get("driver")),
        ("CUDA", lambda run, env: env.get("cuda")),
        ("cuDNN", lambda run, env: env.get("cudnn")),
        ("CPU", lambda run, env: (env.get("cpu") or {}).get("model")),
        ("CPU cores (logical / physical)", lambda run, env: _cores(env.get("cpu") or {})),
        ("host memory", lambda run, env: fmt_bytes((env.get("cpu") or {}).get("memory_total_bytes"))),
        ("torch threads", lambda run, env: (env.get("cpu") or {}).get("torch_threads")),
        ("python", lambda run, env: env.get("python")),
        ("platform", lambda run, env: env.get("platform")),
        ("project commit", lambda run, env: _commit(env)),
        (
            "environment variables",
            lambda run, env: ", ".join(f"{k}={v}" for k, v in (env.get("env") or {}).items()) or None,
        ),
    ]
    libraries = list(dict.fromkeys(lib for env in envs for lib in (env.get("libraries") or {})))
    fields += [(lib, lambda run, env, lib=lib: (env.get("libraries") or {}).get(lib)) for lib in libraries]
    rows = [[name, *[_cell(get(run, env)) for run, env in zip(runs, envs)]] for name, get in fields]
    notes = [
        f"{run.label}: no environment.json in {run.path}; only the records' devices are known."
        for run in runs
        if run.environment is None
    ]
    if len(runs) > 1:  # rows equal on every run collapse to one line under the table
        same = [row for row in rows if len(set(row[1:])) == 1 and row[1] != MISSING]
        unknown = [row for row in rows if set(row[1:]) == {MISSING}]
        rows = [row for row in rows if row not in same and row not in unknown]
        if unknown:
            notes.insert(0, "Not recorded on any run: " + ", ".join(row[0] for row in unknown) + ".")
        if same:
            notes.insert(0, "Same on all runs: " + "; ".join(f"{row[0]} {row[1]}" for row in same) + ".")
    return Table(["", *[r.label for r in runs]], rows, notes)


def _cores(cpu: dict[str, Any]) -> str | None:
    if cpu.get("logical_cores") is None:
        return None
    return f"{cpu.get('logical_cores')} / {cpu.get('physical_cores', MISSING)}"


def _commit(env: dict[str, Any]) -> str | None:
    commit = env.get("git_commit")
    if not commit:
        return None
    return f"{commit[:12]}{' (dirty)' if env.get('git_dirty') else ''}"


def _cell(value: Any) -> str:
    return MISSING if value is None or value == "" else str(value)
