"""`bench report`: run directories in, report.md + report.html + results.csv + charts/*.png out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.report.charts import ChartGroup, draw_all
from bench.report.points import (
    WORKLOADS,
    Baselines,
    Point,
    describe_baseline,
    device_labels,
    device_note,
    group_points,
    parse_baseline,
    workload_label,
)
from bench.report.render import Block, Bullets, Card, Details, Heading, Image, Paragraph, to_html, to_markdown
from bench.report.runs import Run, load_runs
from bench.report.serving import section as serving_section
from bench.report.tables import (
    INVALID,
    Table,
    calibration_notes,
    comparison_table,
    environment_table,
    main_table,
    points_table,
    roofline_table,
    write_csv,
)
from bench.report.verdict import DEFAULT_MIN_COSINE, card_intro, verdict
from bench.roofline.analysis import for_report as roofline_for_report

CHARTS_DIR = "charts"


@dataclass
class ReportFiles:
    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    charts: list[Path] = field(default_factory=list)


def write_report(
    run_dirs: list[Path],
    out_dir: Path | None = None,
    baseline_args: list[str] | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> ReportFiles:
    runs = load_runs(run_dirs)
    baseline = parse_baseline(baseline_args or [], [r for run in runs for r in run.records])
    for run in runs:
        for r in run.records:
            # The ceilings stored with the run (its own machine's calibration) are kept; a record whose run had
            # none gets no calibrated bounds (calibration_notes says why, per run), never this machine's.
            r.roofline = roofline_for_report(r)
    out_dir = out_dir if out_dir is not None else runs[0].path / "report"
    charts_dir = out_dir / CHARTS_DIR
    charts_dir.mkdir(parents=True, exist_ok=True)
    for stale in charts_dir.glob("*.png"):  # charts of a previous report of other points would linger
        stale.unlink()

    files = ReportFiles(out_dir, out_dir / "report.md", out_dir / "report.html", out_dir / "results.csv")
    write_csv(runs, files.csv)
    # Points are what they measure (model, weights, task, workload, device, backend, options), whatever
    # scenario file named them, one per run directory; baselines are looked up across every run given.
    points = [
        p
        for run in runs
        for p in group_points([r for r in run.records if r.serving is None], by_scenario=False, run=run.label)
    ]
    baselines = Baselines(points, baseline)
    cards = verdict(points, baselines, min_cosine)
    blocks: list[Block] = [
        Heading(1, "Benchmark report"),
        Paragraph(_intro(runs, baseline, min_cosine)),
        Heading(2, "Verdict"),
        *[Card(c.title, card_intro(c), c.lines()) for c in cards],
    ]
    for group in _groups(points):
        section, charts = _group_section(group, runs, baselines, charts_dir, min_cosine)
        blocks += section
        files.charts += charts
    serving_blocks, serving_charts = serving_section(runs, charts_dir)  # load levels: their own section
    blocks += serving_blocks
    files.charts += serving_charts
    blocks += [
        *_runs_section(runs),
        Heading(2, "Environment"),
        environment_table(runs),
        *_reading_guide(runs, baseline),
    ]
    files.markdown.write_text(to_markdown(blocks, out_dir), encoding="utf-8")
    files.html.write_text(to_html(blocks, f"Benchmark report: {', '.join(r.label for r in runs)}"), encoding="utf-8")
    return files


def _intro(runs: list[Run], baseline: dict, min_cosine: float) -> str:
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        f"Generated {generated} by `bench report` from {len(runs)} run director"
        f"{'y' if len(runs) == 1 else 'ies'} ({', '.join(f'`{r.label}`' for r in runs)}). Baseline: "
        f"{describe_baseline(baseline)} of the same point; fidelity bound: cosine ≥ {min_cosine:g}."
    )


def _groups(points: list[Point]) -> list[list[Point]]:
    """Points by model × weights × task × workload × device (one verdict card and one section each)."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        k = p.key
        groups.setdefault((k.model, k.weights, k.task, k.workload, k.device), []).append(p)
    return list(groups.values())


def _group_section(
    points: list[Point], runs: list[Run], baselines: Baselines, charts_dir: Path, min_cosine: float
) -> tuple[list[Block], list[Path]]:
    records = [r for p in points for r in p.records]
    first = records[0]
    devices = "; ".join(device_labels(records))
    weights = "" if first.weights == "random" else f" · {first.weights} weights"
    title = f"{first.model} · {first.task} · {devices}{weights}"
    blocks: list[Block] = [Heading(2, title)]
    scenarios = ", ".join(dict.fromkeys(f"`{r.scenario}` ({r.scenario_file})" for r in records))
    in_runs = list(dict.fromkeys(p.run for p in points))
    blocks.append(
        Paragraph(
            f"Workload: {workload_label(first.workload)}; weights {first.weights}; scenarios: "
            f"{scenarios}; run director{'y' if len(in_runs) == 1 else 'ies'}: "
            f"{', '.join(in_runs)}."
        )
    )
    if note := device_note(records):
        blocks.append(Paragraph(note))
    blocks += [
        Heading(3, "Points"),
        main_table(points, baselines),
        Details(
            "Every column (cold costs, whole-life memory, efficiency, percentiles)",
            [Heading(3, "Details"), points_table(points, baselines)],
        ),
    ]
    roofline = roofline_table(points)
    if roofline is not None:
        blocks += [Details("Roofline", [Heading(3, "Roofline"), roofline])]
    by_run = [[p for p in points if p.run == run.label] for run in runs]
    present = [(run, pts) for run, pts in zip(runs, by_run) if pts]
    shared = {p.key for _, pts in present for p in pts if sum(p.key in {q.key for q in o} for _, o in present) > 1}
    if len(present) > 1 and shared:
        blocks += [
            Heading(3, "Across runs"),
            comparison_table([run for run, _ in present], [pts for _, pts in present]),
        ]
    chart_paths = []
    blocks.append(Heading(3, "Charts"))
    group = ChartGroup(title, points, baselines, min_cosine)
    skipped = []
    for chart in draw_all(group, charts_dir):
        if chart.path is None:
            skipped.append(f"{chart.title}: {chart.caption}")
            continue
        chart_paths.append(chart.path)
        blocks += [Heading(4, chart.title), Image(chart.path, chart.title, chart.caption, chart.hover)]
    if skipped:
        blocks += [Heading(4, "Charts not drawn"), Bullets(skipped)]
    return blocks, chart_paths


def _runs_section(runs: list[Run]) -> list[Block]:
    rows = []
    for run in runs:
        status = Counter(r.status for r in run.records)
        invalid = sum(1 for r in run.records if r.status == "ok" and r.valid is False)
        rows.append(
            [
                run.label,
                str(run.path),
                str(len(run.records)),
                *[str(status[s]) for s in ("ok", "failed", "unsupported", "timeout")],
                str(invalid),
                ", ".join(dict.fromkeys(r.scenario for r in run.records)),
            ]
        )
    table = Table(
        ["run", "directory", "records", "ok", "failed", "unsupported", "timeout", f"invalid {INVALID}", "scenarios"],
        rows,
    )
    notes = calibration_notes(runs)
    return [Heading(2, "Runs"), table] + ([Bullets(notes)] if notes else [])


def _reading_guide(runs: list[Run], baseline: dict) -> list[Block]:
    throughputs = ", ".join(f"`{w.primary}` ({task})" for task, w in WORKLOADS.items())
    repeats = any(len(p.records) > 1 for run in runs for p in group_points(run.records, by_scenario=False))
    warned = sum(1 for run in runs for r in run.records if r.warnings)
    items = [
        f"**Baseline**: {describe_baseline(baseline)}. Every point is compared with the point that measures the "
        "same model, weights, task, workload, backend options, device and batch size with those values, "
        "whatever scenario file named it: from the same run directory where it measured there, else from the "
        "first run directory given that has it (default precision fp32, backend eager; `bench report "
        "--baseline KEY=VALUE` sets backend, precision or batch_size).",
        "**Verdict**: per model × task × workload × device, the fastest valid point, the one with the least "
        "measured-phase peak memory and the fastest whose worst cosine against fp32 eager is at least the "
        "bound (`--min-cosine`). Intervals are 95% between repeats (Welch's t on the logs of the per-repeat "
        "values), shown when both sides have at least two repeats.",
        "**Speedup** = point throughput / baseline throughput. **Memory ratio** = point peak memory / "
        f"baseline peak memory (0.60× needs 40% less). {INVALID} after a ratio: the baseline's own measurement "
        "is invalid.",
        f"**Throughput** is each task's primary metric: {throughputs}.",
        "**Peak memory** is the measured phase's, on what binds on the run's device: the process's NVML peak "
        "(else torch's reserved peak) on CUDA, the process's peak RSS on the CPU (reset before the measured "
        "calls). The **whole-life peak** (Details) also holds loading, export, compile and quantization.",
        "**1 − cosine** (fidelity against fp32 eager's outputs) is printed in scientific notation so int8's "
        "4e-07 and fp32's 0 stay apart. A cold cost reads **cached** when its cache was hit.",
        "**Repeats** of a point (the `repeats` column: measured/all) are aggregated: throughput and memory are "
        "the mean of the per-repeat values; percentiles and the latency chart use the raw samples of all "
        "repeats pooled.",
        f"**{INVALID}** marks a measurement its record calls invalid (too noisy: coefficient of variation above "
        "the scenario's `max_cv`, or too few samples); the note says why. Failed, unsupported and timed-out "
        "points are listed with their reason.",
        "A metric column appears when some point has it; `results.csv` holds every field of every record "
        "(one row per record).",
        "**Efficiency** (roofline): the fraction of the device's ceiling a unit of work reached — a decode step "
        "(text generation; prefill in its own column), a forward (feature extraction) or a denoising step (text "
        "to image). Its FLOPs and bytes are "
        "analytic (weights read, KV cache, attention); the ceiling is min(peak matmul FLOP/s of its dtype, "
        "FLOP/byte × memory bandwidth), from `bench calibrate` on the machine that ran it, as its run stored it "
        "(never the machine building this report's; NVIDIA's datasheet beside it for known GPUs). Above 100% "
        "means the data came from caches faster than the calibrated memory bandwidth "
        "(small models on CPUs). The **Roofline** table says which bound applies. Beside a compile point's "
        "efficiency, the generation loop that ran: `generate` (HF generate around a compiled step) or `loop` "
        "(the lean static-cache decode loop).",
    ]
    if repeats:
        items.append("Some points have several repeats in these run directories.")
    if warned:
        items.append(
            f"{warned} record(s) carry percentile warnings: pXX needs ≥ 100/(100−XX) samples (p99: 100); "
            "below that a p95/p99 equals or approaches the max."
        )
    return [Heading(2, "How to read this report"), Bullets(items)]
