"""`bench report`: run directories in, report.md + report.html + results.csv + charts/*.png out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.report.charts import ChartGroup, draw_all
from bench.report.points import (WORKLOADS, Point, describe_baseline, device_labels, device_note, group_points,
                                 parse_baseline, workload_label)
from bench.report.render import Block, Bullets, Heading, Image, Paragraph, to_html, to_markdown
from bench.report.runs import Run, load_runs
from bench.report.serving import section as serving_section
from bench.report.tables import (INVALID, Table, comparison_table, environment_table, points_table, roofline_table,
                                 write_csv)
from bench.roofline.analysis import for_report as roofline_for_report

CHARTS_DIR = "charts"


@dataclass
class ReportFiles:
    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    charts: list[Path] = field(default_factory=list)


def write_report(run_dirs: list[Path], out_dir: Path | None = None, baseline_args: list[str] | None = None
                 ) -> ReportFiles:
    runs = load_runs(run_dirs)
    baseline = parse_baseline(baseline_args or [], [r for run in runs for r in run.records])
    for run in runs:  # roofline bounds from the calibration store for records whose run had none
        for r in run.records:
            r.roofline = roofline_for_report(r)
    out_dir = out_dir if out_dir is not None else runs[0].path / "report"
    charts_dir = out_dir / CHARTS_DIR
    charts_dir.mkdir(parents=True, exist_ok=True)
    for stale in charts_dir.glob("*.png"):  # charts of a previous report of other points would linger
        stale.unlink()

    files = ReportFiles(out_dir, out_dir / "report.md", out_dir / "report.html", out_dir / "results.csv")
    write_csv(runs, files.csv)
    points_by_run = [group_points([r for r in run.records if r.serving is None]) for run in runs]
    blocks: list[Block] = [Heading(1, "Benchmark report"), *_runs_section(runs), *_reading_guide(runs, baseline),
                           Heading(2, "Environment"), environment_table(runs)]
    for scenario, model in _sections(runs):
        section, charts = _scenario_section(scenario, model, runs, points_by_run, baseline, charts_dir)
        blocks += section
        files.charts += charts
    serving_blocks, serving_charts = serving_section(runs, charts_dir)  # load levels: their own section
    blocks += serving_blocks
    files.charts += serving_charts
    files.markdown.write_text(to_markdown(blocks, out_dir), encoding="utf-8")
    files.html.write_text(to_html(blocks, f"Benchmark report: {', '.join(r.label for r in runs)}"), encoding="utf-8")
    return files


def _sections(runs: list[Run]) -> list[tuple[str, str]]:
    """(scenario, model) pairs in the order they first appear: one report section each."""
    return list(dict.fromkeys((r.scenario, r.model) for run in runs for r in run.records if r.serving is None))


def _runs_section(runs: list[Run]) -> list[Block]:
    rows = []
    for run in runs:
        status = Counter(r.status for r in run.records)
        invalid = sum(1 for r in run.records if r.status == "ok" and r.valid is False)
        rows.append([run.label, str(run.path), str(len(run.records)), *[str(status[s]) for s in
                     ("ok", "failed", "unsupported", "timeout")], str(invalid),
                     ", ".join(dict.fromkeys(r.scenario for r in run.records))])
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    intro = (f"Generated {generated} by `bench report` from {len(runs)} run director"
             f"{'y' if len(runs) == 1 else 'ies'}" + (f"; ratios across runs are relative to `{runs[0].label}`."
                                                      if len(runs) > 1 else "."))
    table = Table(["run", "directory", "records", "ok", "failed", "unsupported", "timeout", f"invalid {INVALID}",
                   "scenarios"], rows)
    return [Paragraph(intro), Heading(2, "Runs"), table]


def _reading_guide(runs: list[Run], baseline: dict) -> list[Block]:
    throughputs = ", ".join(f"`{w.primary}` ({task})" for task, w in WORKLOADS.items())
    repeats = any(len(p.records) > 1 for run in runs for p in group_points(run.records))
    warned = sum(1 for run in runs for r in run.records if r.warnings)
    items = [
        f"**Baseline**: {describe_baseline(baseline)}. Every point is compared with the point of the same run "
        "directory, scenario, model, weights, workload, backend options, device and batch size that has those "
        "values (default precision fp32, backend eager; `bench report --baseline KEY=VALUE` sets backend, "
        "precision or batch_size).",
        "**Speedup** = point throughput / baseline throughput. **Memory saving** = 1 − point peak memory / "
        "baseline peak memory (+40% means the point needs 40% less).",
        f"**Throughput** is each task's primary metric: {throughputs}.",
        "**Peak memory** is what binds on the run's device: the process's NVML peak (else torch's reserved "
        "peak) on CUDA, the process's peak RSS on the CPU.",
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
        "FLOP/byte × memory bandwidth), from `bench calibrate` on that device (and NVIDIA's datasheet for known "
        "GPUs). Above 100% means the data came from caches faster than the calibrated memory bandwidth "
        "(small models on CPUs). The **Roofline** table says which bound applies. Beside a compile point's "
        "efficiency, the generation loop that ran: `generate` (HF generate around a compiled step) or `loop` "
        "(the lean static-cache decode loop).",
    ]
    if repeats:
        items.append("Some points have several repeats in these run directories.")
    if warned:
        items.append(f"{warned} record(s) carry percentile warnings: pXX needs ≥ 100/(100−XX) samples (p99: 100); "
                     "below that a p95/p99 equals or approaches the max.")
    return [Heading(2, "How to read this report"), Bullets(items)]


def _scenario_section(scenario: str, model: str, runs: list[Run], points_by_run: list[list[Point]],
                      baseline: dict, charts_dir: Path) -> tuple[list[Block], list[Path]]:
    blocks: list[Block] = [Heading(2, f"{scenario} · {model}")]
    in_section = [[p for p in points if (p.key.scenario, p.key.model) == (scenario, model)]
                  for points in points_by_run]
    records = [r for points in in_section for p in points for r in p.records]
    first = records[0]
    workloads = "; ".join(dict.fromkeys(workload_label(r.workload) for r in records))
    devices = ", ".join(device_labels(records))
    blocks.append(Paragraph(f"Task `{first.task}`, weights {first.weights}, workload: {workloads}; "
                            f"device: {devices}; scenario file `{first.scenario_file}`."))
    if note := device_note(records):
        blocks.append(Paragraph(note))
    several = len(runs) > 1
    for run, points, all_points in zip(runs, in_section, points_by_run):
        if not points:
            continue
        by_key = {p.key: p for p in all_points}
        blocks += [Heading(3, f"Points · {run.label}" if several else "Points"), points_table(points, by_key, baseline)]
        roofline = roofline_table(points)
        if roofline is not None:
            blocks += [Heading(3, f"Roofline · {run.label}" if several else "Roofline"), roofline]
    if several:
        present = [(run, points) for run, points in zip(runs, in_section) if points]
        blocks += [Heading(3, "Across runs"),
                   comparison_table([run for run, _ in present], [points for _, points in present])]
    chart_paths = []
    for run, points, all_points in zip(runs, in_section, points_by_run):
        if not points:
            continue
        group = ChartGroup(run.label, scenario, model, points, {p.key: p for p in all_points}, baseline)
        blocks.append(Heading(3, f"Charts · {run.label}" if several else "Charts"))
        if not group.ok:
            blocks.append(Paragraph("No charts: no point of this scenario measured (see the reasons above)."))
            continue
        skipped = []
        for chart in draw_all(group, charts_dir):
            if chart.path is None:
                skipped.append(f"{chart.title}: {chart.caption}")
                continue
            chart_paths.append(chart.path)
            blocks += [Heading(4, chart.title), Image(chart.path, chart.title, chart.caption)]
        if skipped:
            blocks += [Heading(4, "Charts not drawn"), Bullets(skipped)]
    return blocks, chart_paths
