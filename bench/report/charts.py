"""matplotlib charts, one figure per model × task × workload × device (every run directory given together)
and chart kind, drawn from the points; none for a group with a single measured point. One encoding
throughout: colour = precision, marker = backend (and run directory, where several are given); bars carry
their values; the legend lists only what is drawn (docs/reports.md)."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display, and no GUI toolkit to import

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.precisions import PRECISIONS  # noqa: E402
from bench.report.points import Baselines, Point, describe_baseline, device_labels, speedup, workload_label  # noqa: E402
from bench.report.tables import ONE_MINUS_COSINE, fmt_gap, fmt_rate, sort_points  # noqa: E402

DPI = 100
PANELS_PER_ROW = 4  # batch-size panels of the quantization chart before it wraps
LABEL_LIMIT = 40  # scatter points above which per-point labels would overlap into noise (throughput vs memory)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass
class Chart:
    kind: str
    title: str
    caption: str  # what it shows, or why it was skipped
    path: Path | None = None  # None when skipped
    hover: list[dict] | None = None  # each measured point's values, as printed (the HTML's hover)


@dataclass
class ChartGroup:
    """The points of one model × task × workload × device, from every run directory given."""

    name: str  # the group's title: what file names are made of
    points: list[Point]
    baselines: Baselines
    min_cosine: float = 0.999

    @property
    def baseline(self) -> dict[str, Any]:
        return self.baselines.baseline

    @property
    def several_runs(self) -> bool:
        return len({p.run for p in self.points}) > 1

    @property
    def ok(self) -> list[Point]:
        return [p for p in _by_run(sort_points(self.points)) if p.status == "ok" and p.throughput is not None]

    def headline(self) -> str:
        """Model, workload and device: what every title names."""
        workloads = dict.fromkeys(workload_label(p.first.workload) for p in self.points)
        devices = device_labels([r for p in self.points for r in p.records])
        return f"{self.points[0].key.model} · {'; '.join(workloads)} · {'; '.join(devices)}"

    def unit(self) -> str:
        units = {p.throughput_metric.unit for p in self.points if p.throughput_metric is not None}
        return " | ".join(sorted(units)) or "throughput"

    def base(self, p: Point) -> Point | None:
        return self.baselines.of(p)

    def arm(self, p: Point) -> str:
        """The x category / series name of a point: its backend (and run directory, where several)."""
        return f"{p.key.backend} · {p.run}" if self.several_runs else p.key.backend

    def label(self, p: Point) -> str:
        return f"{self.arm(p)} · {p.key.precision} · bs {p.key.batch_size}"

    def hover(self) -> list[dict]:
        from bench.summary import fmt_bytes

        return [
            {
                "label": self.label(p),
                "value": f"{fmt_rate(p.throughput)} {self.unit()}, "
                f"{fmt_bytes(round(p.peak_memory_bytes)) if p.peak_memory_bytes else '-'} peak",
            }
            for p in self.ok
        ]


def _by_run(points: list[Point]) -> list[Point]:
    order = {run: i for i, run in enumerate(dict.fromkeys(p.run for p in points))}
    return sorted(points, key=lambda p: order[p.run])


def draw_all(group: ChartGroup, out_dir: Path) -> list[Chart]:
    """Every chart kind for one group, written as PNGs into out_dir; none (each saying why) when fewer than
    two points measured: one bar or one dot compares nothing."""
    stem = _slug(group.name)
    charts = []
    single = len(group.ok) < 2
    for kind, (title, draw) in CHARTS.items():
        drawn = draw(group) if group.ok else "skipped: no point measured"  # (figure, caption), or why not
        if isinstance(drawn, str):
            charts.append(Chart(kind, title, drawn))
            continue
        if single:  # a chart's own reason to skip comes first; else one bar or dot compares nothing
            plt.close(drawn[0])
            charts.append(
                Chart(kind, title, "skipped: 1 measured point — nothing to compare (its numbers are in the tables)")
            )
            continue
        fig, caption = drawn
        path = out_dir / f"{stem}--{kind}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        charts.append(Chart(kind, title, caption, path, group.hover()))
    return charts


# --- the charts --------------------------------------------------------------------------------------------


def quantization_chart(g: ChartGroup):
    """Per batch size: throughput (top) and peak memory (bottom) bars, one per precision, grouped by backend;
    the baseline point's value drawn across the panel as a dashed line."""
    if not g.ok:
        return "skipped: no point of this scenario measured"
    backends = list(dict.fromkeys(g.arm(p) for p in _by_run(sort_points(g.points))))
    precisions = _precisions(g.points)
    batches = sorted({p.key.batch_size for p in g.points})
    drawn = {"baseline line": False, "baseline point": False}
    cols = min(PANELS_PER_ROW, len(batches))
    bands = math.ceil(len(batches) / cols)
    width = max(4.0, 0.35 * len(backends) * len(precisions) + 1.5)
    fig, axes = plt.subplots(2 * bands, cols, figsize=(width * cols, 3.4 * 2 * bands), squeeze=False)
    mem_scale, mem_unit = _bytes_scale([p.peak_memory_bytes for p in g.ok])
    bar = 0.8 / len(precisions)
    for i, batch in enumerate(batches):
        band, col = divmod(i, cols)
        tp_ax, mem_ax = axes[2 * band][col], axes[2 * band + 1][col]
        at_batch = {(g.arm(p), p.key.precision): p for p in g.points if p.key.batch_size == batch}
        for ax, value, scale in (
            (tp_ax, lambda p: p.throughput, 1.0),
            (mem_ax, lambda p: p.peak_memory_bytes, mem_scale),
        ):
            for b, backend in enumerate(backends):
                for j, precision in enumerate(precisions):
                    x = b + (j - (len(precisions) - 1) / 2) * bar
                    p = at_batch.get((backend, precision))
                    v = value(p) if p is not None and p.status == "ok" else None
                    if v is None:
                        if p is not None:  # failed or unsupported: say so where the bar would be
                            ax.text(
                                x, 0, f" {p.status}", rotation=90, ha="center", va="bottom", fontsize=7, color="0.35"
                            )
                        continue
                    is_base = g.baselines.is_baseline(p)
                    drawn[precision] = True
                    drawn["baseline point"] |= is_base
                    bars = ax.bar(
                        x,
                        v / scale,
                        bar * 0.9,
                        color=_color(precision),
                        edgecolor="black",
                        linewidth=1.8 if is_base else 0.5,
                        hatch="xx" if p.invalid_reasons else None,
                    )
                    shown = v / scale
                    text = fmt_rate(v) if scale == 1.0 else f"{shown:.0f}" if shown >= 100 else f"{shown:.3g}"
                    ax.bar_label(bars, labels=[text], fontsize=7, padding=2, rotation=90 if len(precisions) > 3 else 0)
            for b, backend in enumerate(backends):  # each arm's own baseline (run directories differ)
                base = next(
                    (g.base(p) for (arm, _), p in at_batch.items() if arm == backend and g.base(p) is not None), None
                )
                if base is not None and value(base) is not None:
                    ax.hlines(value(base) / scale, b - 0.45, b + 0.45, color="black", linestyle="--", linewidth=1)
                    drawn["baseline line"] = True
            ax.margins(y=0.15)  # room for the values above the bars
            ax.set_xticks(range(len(backends)), backends)
            ax.set_xlim(-0.5, len(backends) - 0.5)  # status labels do not widen the axes as bars do
            ax.grid(axis="y", alpha=0.3)
        tp_ax.set_title(f"batch {batch}", fontsize=10)
        tp_ax.set_ylabel(f"throughput ({g.unit()})")
        mem_ax.set_ylabel(f"peak memory ({mem_unit})")
        mem_ax.set_xlabel("backend")
    for j in range(len(batches), bands * cols):  # unused panels of the last band
        band, col = divmod(j, cols)
        axes[2 * band][col].set_visible(False)
        axes[2 * band + 1][col].set_visible(False)
    handles = [Patch(facecolor=_color(p), edgecolor="black", label=p) for p in precisions if drawn.get(p)]
    if drawn["baseline line"]:
        handles.append(
            Line2D([], [], color="black", linestyle="--", label=f"baseline ({describe_baseline(g.baseline)})")
        )
    if drawn["baseline point"]:
        handles.append(Patch(facecolor="white", edgecolor="black", linewidth=1.8, label="baseline point"))
    if any(p.invalid_reasons for p in g.ok):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="xx", label="invalid (too noisy)"))
    fig.legend(handles=handles, loc="upper center", ncols=min(len(handles), 6), bbox_to_anchor=(0.5, 0), frameon=False)
    fig.suptitle(f"{g.headline()}\nquantization gains")
    fig.tight_layout()
    return fig, (
        "Throughput (top) and measured-phase peak memory (bottom) of each precision, grouped by backend "
        "(and run directory), one panel per batch size, values on the bars; the dashed line is the group's "
        "baseline, drawn with a heavy outline; hatched bars "
        "are measurements the records mark invalid; failed or unsupported points are named where "
        "their bar would be."
    )


def energy_chart(g: ChartGroup):
    """Per batch size: energy per unit of work (J per output token, sequence or image; the mean over repeats)
    of each precision, grouped by backend, beside the quantization gains."""
    from bench.measure.telemetry.units import primary_energy

    readings = {p.key: [primary_energy(r.telemetry) for r in p.ok] for p in g.ok}
    arms = {p.key: g.arm(p) for p in g.ok}
    values = {
        (arms[k], k.precision, k.batch_size): float(np.mean([v for _, v in rs]))
        for k, rs in readings.items()
        if rs and all(rs)
    }
    if not values:
        reasons = {
            r.telemetry.energy.unavailable_reason
            for p in g.ok
            for r in p.ok
            if r.telemetry is not None and r.telemetry.energy.unavailable_reason
        }
        return "skipped: no energy measured" + (
            f" ({'; '.join(sorted(reasons))})" if reasons else " (records without telemetry)"
        )
    unit = " | ".join(sorted({u for rs in readings.values() for u, _ in filter(None, rs)}))
    backends = list(dict.fromkeys(g.arm(p) for p in _by_run(sort_points(g.points))))
    precisions, batches = _precisions(g.points), sorted({p.key.batch_size for p in g.points})
    cols = min(PANELS_PER_ROW, len(batches))
    rows = math.ceil(len(batches) / cols)
    width = max(4.0, 0.35 * len(backends) * len(precisions) + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.4 * rows), squeeze=False)
    bar = 0.8 / len(precisions)
    drawn: set[str] = set()
    for i, batch in enumerate(batches):
        ax = axes[i // cols][i % cols]
        ax.margins(y=0.15)
        for b, backend in enumerate(backends):
            for j, precision in enumerate(precisions):
                value = values.get((backend, precision, batch))
                if value is not None:
                    bars = ax.bar(
                        b + (j - (len(precisions) - 1) / 2) * bar,
                        value,
                        bar * 0.9,
                        color=_color(precision),
                        edgecolor="black",
                        linewidth=0.5,
                    )
                    ax.bar_label(bars, labels=[f"{value:.3g}"], fontsize=7, padding=2)
                    drawn.add(precision)
        ax.set_xticks(range(len(backends)), backends)
        ax.set_xlim(-0.5, len(backends) - 0.5)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"batch {batch}", fontsize=10)
        ax.set_ylabel(unit)
        ax.set_xlabel("backend")
    for j in range(len(batches), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    handles = [Patch(facecolor=_color(p), edgecolor="black", label=p) for p in precisions if p in drawn]
    fig.legend(handles=handles, loc="upper center", ncols=min(len(handles), 6), bbox_to_anchor=(0.5, 0), frameon=False)
    fig.suptitle(f"{g.headline()}\nenergy per unit of work")
    fig.tight_layout()
    return fig, (
        "Energy per unit of work over the measured phase (the device's energy counter, power integrated "
        "where it has none, or RAPL on the CPU; see each record's telemetry for the method), one bar per "
        "precision grouped by backend, one panel per batch size; points without an energy figure have "
        "no bar."
    )


def batch_chart(g: ChartGroup):
    """Throughput against batch size, one line per backend/precision."""
    if not g.ok:
        return "skipped: no point of this scenario measured"
    if len({p.key.batch_size for p in g.ok}) < 2:
        return "skipped: one batch size (a line needs two)"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    series = _series(g.ok, g)
    for (arm, precision), points in series.items():
        backend = points[0].key.backend
        points = sorted(points, key=lambda p: p.key.batch_size)
        xs = [p.key.batch_size for p in points]
        ys = [p.throughput for p in points]
        ax.plot(
            xs,
            ys,
            color=_color(precision),
            marker=_marker(backend, g),
            linestyle=_linestyle(backend, g),
            label=f"{arm} / {precision}",
        )
        bad = [(x, y) for p, x, y in zip(points, xs, ys) if p.invalid_reasons]
        if bad:
            ax.scatter(*zip(*bad), s=140, facecolors="none", edgecolors="red", linewidths=1.5, zorder=3)
    batches = sorted({p.key.batch_size for p in g.ok})
    if batches[-1] / batches[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    rates = [p.throughput for p in g.ok]
    if max(rates) / min(rates) >= 50:  # a linear axis would flatten every small batch onto zero
        ax.set_yscale("log")
    ax.set_xlabel("batch size (sequences per call)")
    ax.set_ylabel(f"throughput ({g.unit()})")
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if any(p.invalid_reasons for p in g.ok):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor="red",
                linestyle="none",
                label="invalid (too noisy)",
            )
        )
    ax.legend(handles=handles, fontsize=8, ncols=1 if len(handles) <= 12 else 2, loc="best")
    ax.set_title(f"{g.headline()}\nthroughput vs batch size", fontsize=10)
    fig.tight_layout()
    return fig, "Throughput of each backend/precision as the batch grows; red rings mark invalid measurements."


def latency_chart(g: ChartGroup):
    """A box per point from the pooled raw latency samples, p50 and p99 marked."""
    points = [p for p in g.ok if p.samples("latency_s")]
    if not points:
        return "skipped: no measured point kept raw latency samples"
    samples = [p.samples("latency_s") for p in points]
    scale, unit = _seconds_scale(max(max(s) for s in samples))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.34 * len(points) + 1.6)))
    positions = list(range(len(points)))[::-1]  # first point at the top, like the tables
    box = ax.boxplot(
        [[x / scale for x in s] for s in samples],
        positions=positions,
        orientation="horizontal",
        whis=(0, 100),
        showfliers=False,
        widths=0.6,
        patch_artist=True,
        medianprops={"color": "black", "linewidth": 0},
    )
    for patch, p in zip(box["boxes"], points):
        patch.set_facecolor(_color(p.key.precision))
        patch.set_alpha(0.55)
        if p.invalid_reasons:
            patch.set_hatch("xx")
    p50 = [p.stat("latency_s", "p50") / scale for p in points]
    p99 = [p.stat("latency_s", "p99") / scale for p in points]
    ax.scatter(p50, positions, marker="|", s=260, color="black", linewidths=2, zorder=3, label="p50")
    ax.scatter(p99, positions, marker="^", s=50, color="crimson", zorder=3, label="p99")
    ax.set_yticks(
        positions,
        [g.label(p) + (f" · {p.first.device}" if len({q.key.device for q in points}) > 1 else "") for p in points],
        fontsize=8,
    )
    lo, hi = min(min(s) for s in samples), max(max(s) for s in samples)
    if hi / lo > 20:
        ax.set_xscale("log")
    ax.set_xlabel(f"latency per call ({unit})")
    ax.grid(axis="x", alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(facecolor=_color(pr), alpha=0.55, label=pr) for pr in _precisions(points)]
    handles.append(Patch(facecolor="white", edgecolor="black", label="box p25–p75, whiskers min–max"))
    if any(p.invalid_reasons for p in points):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="xx", label="invalid (too noisy)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(f"{g.headline()}\nlatency distribution", fontsize=10)
    fig.tight_layout()
    return fig, (
        "Every measured call of each point (repeats pooled): box p25–p75, whiskers min–max, black bar "
        "p50, red triangle p99."
    )


def tradeoff_chart(g: ChartGroup):
    """Throughput against peak memory per point; the Pareto front joins the points nothing beats on both."""
    points = [p for p in g.ok if p.peak_memory_bytes]
    if not points:
        return "skipped: no measured point recorded peak memory"
    scale, unit = _bytes_scale([p.peak_memory_bytes for p in points])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for p in points:
        ax.scatter(
            p.peak_memory_bytes / scale,
            p.throughput,
            color=_color(p.key.precision),
            marker=_marker(p.key.backend, g),
            s=55,
            edgecolors="red" if p.invalid_reasons else "black",
            linewidths=1.5 if p.invalid_reasons else 0.5,
            zorder=3,
        )
        if len(points) <= LABEL_LIMIT:
            ax.annotate(
                f"bs{p.key.batch_size}",
                (p.peak_memory_bytes / scale, p.throughput),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    front = _pareto(points)
    ax.plot(
        [p.peak_memory_bytes / scale for p in front],
        [p.throughput for p in front],
        color="0.4",
        linestyle=":",
        zorder=2,
    )
    ax.set_xlabel(f"peak memory ({unit})")
    ax.set_ylabel(f"throughput ({g.unit()})")
    ax.grid(alpha=0.3)
    handles = [Patch(facecolor=_color(pr), label=pr) for pr in _precisions(points)]
    handles += [
        Line2D([], [], marker=_marker(b, g), color="0.3", linestyle="none", label=b)
        for b in dict.fromkeys(p.key.backend for p in points)
    ]
    handles.append(Line2D([], [], color="0.4", linestyle=":", label="Pareto front"))
    if any(p.invalid_reasons for p in points):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markerfacecolor="white",
                markeredgecolor="red",
                linestyle="none",
                label="invalid (too noisy)",
            )
        )
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title(f"{g.headline()}\nthroughput vs peak memory", fontsize=10)
    fig.tight_layout()
    return fig, (
        "Each measured point by peak memory and throughput (labels: batch size); up and left is better, "
        "the dotted line joins the points no other point beats on both."
    )


def fidelity_chart(g: ChartGroup):
    """1 − cosine (log axis: int8's 1e-6 and bf16's 1e-3 apart) against speedup, for every point that measured
    fidelity and has a measured baseline; the bound (1 − min cosine) drawn across. Labels name the points no
    other point beats on both (faster and closer), placed where they overlap no other label."""
    marks = [(p, ONE_MINUS_COSINE.value(p), speedup(p, g.base(p))) for p in g.ok]
    if all(v is None for _, v, _ in marks):
        return "skipped: no record of this group has a fidelity metric (record.fidelity)"
    marks = [(p, v, s) for p, v, s in marks if v is not None and s is not None]
    if not marks:
        return "skipped: no point has both a fidelity metric and a measured baseline"
    positive = [v for _, v, _ in marks if v > 0]
    floor = min(positive + [1 - g.min_cosine]) / 10  # where an exact match (1 − cosine = 0) is drawn
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    exact = False
    for p, v, s in marks:
        y = v if v > 0 else floor
        exact |= v <= 0
        if v > 0:
            ax.scatter(
                s,
                y,
                color=_color(p.key.precision),
                marker=_marker(p.key.backend, g),
                s=70,
                edgecolors="red" if p.invalid_reasons else "black",
                linewidths=0.8,
                zorder=3,
            )
        else:  # an unfilled marker takes no edge colour
            ax.scatter(s, y, color=_color(p.key.precision), marker="_", s=120, linewidths=2, zorder=3)
    ax.set_yscale("log")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.axhline(1 - g.min_cosine, color="crimson", linestyle=":", linewidth=1.2)
    ax.set_xlabel(f"speedup vs baseline ({describe_baseline(g.baseline)}), ×")
    ax.set_ylabel("1 − cosine vs fp32 eager (log; lower is closer)")
    ax.grid(alpha=0.3, which="both")
    handles = [Patch(facecolor=_color(pr), label=pr) for pr in _precisions([p for p, _, _ in marks])]
    handles += [
        Line2D([], [], marker=_marker(b, g), color="0.3", linestyle="none", label=b)
        for b in dict.fromkeys(p.key.backend for p, v, _ in marks if v > 0)
    ]
    handles.append(Line2D([], [], color="black", linestyle="--", label="speedup 1× (baseline)"))
    handles.append(Line2D([], [], color="crimson", linestyle=":", label=f"bound: cosine ≥ {g.min_cosine:g}"))
    if exact:
        handles.append(
            Line2D(
                [],
                [],
                marker="_",
                markersize=10,
                color="0.3",
                linestyle="none",
                label="1 − cosine = 0 (drawn at the bottom)",
            )
        )
    # Outside the axes, so that it hides no point and no label.
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.set_title(f"{g.headline()}\nfidelity vs speedup", fontsize=10)
    fig.tight_layout()  # before the labels: their places are chosen on the final axes
    front = _non_dominated([(s, v) for _, v, s in marks])
    labels: dict[tuple[float, float], list[tuple[int, str]]] = {}  # one label per position on the front
    for (p, v, s), best in zip(marks, front):
        if best:
            labels.setdefault((s, v if v > 0 else floor), []).append((p.key.batch_size, fmt_gap(v)))
    texts = [(x, y, _batch_label(items)) for (x, y), items in labels.items()]
    left_out = place_labels(ax, texts, [(s, v if v > 0 else floor) for _, v, s in marks])
    more = f"; {left_out} of them unlabelled for want of space (every point is in the tables)" if left_out else ""
    return fig, (
        "Each point by its speedup over the baseline and 1 − cosine of its outputs against fp32 eager "
        "(log axis); below the dotted line is within the fidelity bound. Labels (batch size, 1 − cosine) name "
        f"the points no other point beats on both speedup and fidelity{more}."
    )


def _non_dominated(points: list[tuple[float, float]]) -> list[bool]:
    """(speedup, 1 − cosine) pairs: True where no other pair is at least as fast and as close, and better in one."""
    return [not any(s2 >= s and v2 <= v and (s2 > s or v2 < v) for s2, v2 in points) for s, v in points]


def _batch_label(items: list[tuple[int, str]]) -> str:
    sizes = sorted({bs for bs, _ in items})
    gaps = list(dict.fromkeys(gap for _, gap in items))
    which = f"bs{','.join(map(str, sizes))}" if len(sizes) <= 4 else f"{len(sizes)} batch sizes"
    return f"{which} {gaps[0]}" if len(gaps) == 1 else which


# Where a label may sit around its point (points of offset), nearest first; beyond the first ring a thin
# leader line joins it to its point.
LABEL_RINGS = (4, 12, 22, 34, 50)
LABEL_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))


def place_labels(ax: Any, texts: list[tuple[float, float, str]], points: list[tuple[float, float]]) -> int:
    """Annotate (x, y, text) in data coordinates so that no two labels overlap and each stays inside the axes:
    each takes the nearest free place around its point (one covering no marker first, else one covering only
    markers). Returns the number of labels that found no free place and were left out."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = [ax.transData.transform(pt) for pt in points]
    candidates = [(avoid, ring, d) for avoid in (True, False) for ring in LABEL_RINGS for d in LABEL_DIRECTIONS]
    placed: list[Any] = []
    left_out = 0
    for x, y, text in texts:
        for avoid_markers, ring, (dx, dy) in candidates:
            ann = ax.annotate(
                text,
                (x, y),
                xytext=(dx * ring, dy * ring),
                textcoords="offset points",
                fontsize=7,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                arrowprops=dict(arrowstyle="-", color="0.55", linewidth=0.5) if ring > LABEL_RINGS[0] else None,
                zorder=4,
            )
            box = label_box(ann, renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            free = inside and not any(box.overlaps(other) for other in placed)
            if free and avoid_markers:
                free = not any(box.padded(2).contains(mx, my) for mx, my in markers)
            if free:
                placed.append(box)
                break
            ann.remove()
        else:
            left_out += 1
    return left_out


def label_box(ann: Any, renderer: Any) -> Any:
    """The display box of an annotation's text alone (matplotlib's own extent also covers its leader line)."""
    from matplotlib.text import Text

    ann.get_window_extent(renderer)  # places the text for this renderer
    return Text.get_window_extent(ann, renderer)


PHASE_FILL = {"decode": "full", "forward": "full", "step": "full", "prefill": "none"}  # prefill drawn hollow


def roofline_chart(g: ChartGroup):
    """Arithmetic intensity against achieved FLOP/s, log-log, under the device's roofs: bandwidth × intensity
    up to the ridge, then the matmul peak of each dtype the points compute in (calibrated solid, datasheet
    dashed)."""
    records = [r for p in g.ok for r in p.ok if r.roofline is not None and r.roofline.phases]
    if not records:
        return "skipped: no measured point has a roofline section (text generation and feature extraction do)"
    devices = sorted({r.device_name or r.device for r in records})
    if len(devices) > 1:
        return f"skipped: points from several devices ({', '.join(devices)}) share no ceiling"
    ceilings = {}
    for source in ("calibrated", "datasheet"):
        for r in records:  # the last record that has this ceiling names it (one device: the same ceiling)
            if (c := r.roofline.ceilings.get(source)) is not None:
                ceilings[source] = c
    if not any(c.memory_bytes_per_s for c in ceilings.values()):
        return (
            f"skipped: no calibration for {devices[0]} stored with its runs and no datasheet entry — run "
            "`bench calibrate` on that machine before `bench run`"
        )
    marks = []  # (point, phase name, intensity, achieved FLOP/s, dtype)
    for p in g.ok:
        names = dict.fromkeys(n for r in p.ok if r.roofline is not None for n in r.roofline.phases)
        for name in names:
            phases = [r.roofline.phases[name] for r in p.ok if r.roofline is not None and name in r.roofline.phases]
            marks.append(
                (
                    p,
                    name,
                    phases[0].arithmetic_intensity_flops_per_byte,
                    sum(ph.achieved_flops_per_s for ph in phases) / len(phases),
                    phases[0].compute_dtype,
                )
            )
    dtypes = list(dict.fromkeys(m[4] for m in marks))
    peaks = [v for c in ceilings.values() for d, v in c.matmul_flops_per_s.items() if d in dtypes]
    ridges = [
        v / c.memory_bytes_per_s
        for c in ceilings.values()
        if c.memory_bytes_per_s
        for d, v in c.matmul_flops_per_s.items()
        if d in dtypes
    ]
    xs = [m[2] for m in marks] + ridges
    x_lo, x_hi = min(xs) / 4, max(xs) * 4
    scale, unit = (1e12, "TFLOP/s") if max(peaks + [m[3] for m in marks]) >= 1e12 else (1e9, "GFLOP/s")
    fig, ax = plt.subplots(figsize=(8, 5.2))
    grid = [x_lo * (x_hi / x_lo) ** (i / 200) for i in range(201)]
    for source, c in ceilings.items():
        style = "-" if source == "calibrated" else "--"
        bw = c.memory_bytes_per_s
        if not bw:
            continue
        if not any(d in c.matmul_flops_per_s for d in dtypes):  # bandwidth roof only
            ax.plot(grid, [bw * x / scale for x in grid], color="0.25", linestyle=style, linewidth=1.2)
        for d in dtypes:
            peak = c.matmul_flops_per_s.get(d)
            if not peak:
                continue
            ax.plot(grid, [min(peak, bw * x) / scale for x in grid], color="0.25", linestyle=style, linewidth=1.2)
            ax.annotate(
                f"{d} {fmt_rate(peak / scale)} {unit} ({source})",
                (x_hi, peak / scale),
                fontsize=7,
                ha="right",
                va="bottom",
                color="0.25",
            )
        knee = min([v / bw for d, v in c.matmul_flops_per_s.items() if d in dtypes] or [x_hi])
        x_label = (x_lo * min(knee, x_hi)) ** 0.5  # halfway up the bandwidth slope, inside the axes
        ax.annotate(
            f"{bw / 1e9:,.1f} GB/s ({source})",
            (x_label, bw * x_label / scale),
            fontsize=7,
            ha="left",
            va="top",
            color="0.25",
            xytext=(6, -2),
            textcoords="offset points",
        )
    for p, name, x, y, _ in marks:
        ax.scatter(
            x,
            y / scale,
            marker=_marker(p.key.backend, g),
            s=60,
            zorder=3,
            linewidths=1.5,
            facecolors=_color(p.key.precision) if PHASE_FILL.get(name) == "full" else "none",
            edgecolors=_color(p.key.precision),
        )
        if p.invalid_reasons:
            ax.scatter(x, y / scale, s=160, facecolors="none", edgecolors="red", linewidths=1.2, zorder=3)
        if len(marks) <= LABEL_LIMIT:
            ax.annotate(
                f"bs{p.key.batch_size} {name}", (x, y / scale), fontsize=7, xytext=(4, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte, analytic)")
    ax.set_ylabel(f"achieved {unit}")
    ax.grid(alpha=0.3, which="both")
    handles = [Patch(facecolor=_color(pr), label=pr) for pr in _precisions(g.ok)]
    handles += [
        Line2D([], [], marker=_marker(b, g), color="0.3", linestyle="none", label=b)
        for b in dict.fromkeys(p.key.backend for p in g.ok)
    ]
    for name in dict.fromkeys(m[1] for m in marks):
        hollow = PHASE_FILL.get(name) != "full"
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                color="0.3",
                markerfacecolor="none" if hollow else "0.3",
                label=f"{name}{' (hollow)' if hollow else ''}",
            )
        )
    handles += [
        Line2D([], [], color="0.25", linestyle="-" if s == "calibrated" else "--", label=f"{s} ceiling")
        for s in ceilings
    ]
    if any(p.invalid_reasons for p, *_ in marks):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor="red",
                linestyle="none",
                label="invalid (too noisy)",
            )
        )
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(f"{g.headline()}\nroofline", fontsize=10)
    fig.tight_layout()
    return fig, (
        "Each point's units of work (decode step, prefill, forward, denoising step) by analytic arithmetic "
        "intensity and achieved FLOP/s, under the device's roofs: memory bandwidth × intensity up to the "
        "ridge, then the matmul peak of the dtype it computes in (solid: `bench calibrate`; dashed: "
        "datasheet). A point above the roof read from caches faster than the calibrated memory bandwidth."
    )


# kind (the file name's last part) → (title, drawing function), in the report's order.
CHARTS = {
    "quantization": ("Quantization gains: throughput and peak memory by precision", quantization_chart),
    "energy": ("Energy per unit of work by precision and backend", energy_chart),
    "throughput-vs-batch": ("Throughput vs batch size", batch_chart),
    "latency": ("Latency distribution", latency_chart),
    "throughput-vs-memory": ("Throughput vs peak memory", tradeoff_chart),
    "fidelity-vs-speedup": ("Fidelity vs speedup", fidelity_chart),
    "roofline": ("Roofline: achieved FLOP/s vs arithmetic intensity", roofline_chart),
}


# --- encodings and helpers ---------------------------------------------------------------------------------


def _precisions(points: list[Point]) -> list[str]:
    present = {p.key.precision for p in points}
    return [p for p in PRECISIONS if p in present] + sorted(present - set(PRECISIONS))


def _color(precision: str) -> Any:
    # Fixed per precision across every chart and report, so fp32 is always the same blue.
    order = list(PRECISIONS)
    index = order.index(precision) if precision in order else len(order) + sum(map(ord, precision)) % 5
    return plt.get_cmap("tab10")(index % 10)


def _marker(backend: str, g: ChartGroup) -> str:
    backends = list(dict.fromkeys(p.key.backend for p in sort_points(g.points)))
    return MARKERS[backends.index(backend) % len(MARKERS)] if backend in backends else MARKERS[0]


def _linestyle(backend: str, g: ChartGroup) -> str:
    backends = list(dict.fromkeys(p.key.backend for p in sort_points(g.points)))
    return ("-", "--", "-.", ":")[backends.index(backend) % 4]


def _series(points: list[Point], g: ChartGroup) -> dict[tuple[str, str], list[Point]]:
    series: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        series.setdefault((g.arm(p), p.key.precision), []).append(p)
    return series


def _pareto(points: list[Point]) -> list[Point]:
    """Points with no other point at less or equal memory and higher throughput, by memory."""
    front, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p.peak_memory_bytes, -p.throughput)):
        if p.throughput > best:
            front.append(p)
            best = p.throughput
    return front


def _bytes_scale(values: list[float | None]) -> tuple[float, str]:
    top = max((v for v in values if v), default=0)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if top >= scale:
            return float(scale), unit
    return 1.0, "B"


def _seconds_scale(top: float) -> tuple[float, str]:
    if top >= 1:
        return 1.0, "s"
    if top >= 1e-3:
        return 1e-3, "ms"
    return 1e-6, "us"


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    if slug != text:  # a model given as a path: keep "a/b" and "a_b" from writing the same file
        slug = f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return slug
