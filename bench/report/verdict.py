"""The verdict: for each model × task × workload × device, which configuration to use.

A card names the fastest valid point and the one with the least measured-phase peak memory, each with its
ratio to its baseline (`Baselines`: eager fp32 of the same identity by default) and a 95% interval between
repeats where both sides have at least two; the fastest valid point whose fidelity (the worst cosine of its
repeats against the fp32 eager reference) is at least `min_cosine`; and the points that were invalid or did
not measure. The same cards head report.md/html, summary.md and `bench run`'s terminal table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bench.report.points import DEFAULT_BASELINE, Baselines, Point, device_labels, group_points, workload_label
from bench.results import Record

DEFAULT_MIN_COSINE = 0.999
CONFIDENCE = 0.95
REFERENCE = ("eager", "fp32")  # what fidelity is measured against: within any bound by definition


@dataclass
class Ratio:
    value: float  # point / baseline (means over repeats)
    interval: tuple[float, float] | None  # 95% between repeats (Welch t on logs); None under 2 repeats a side
    repeats: tuple[int, int]  # (point, baseline)
    baseline: Point


@dataclass
class Pick:
    point: Point
    value: float  # throughput, or bytes
    ratio: Ratio | None  # None: no measured baseline
    is_baseline: bool


@dataclass
class Card:
    title: str  # model · task · device
    workload: str
    unit: str  # of the throughput
    baseline: str  # "eager fp32"
    several_runs: bool
    min_cosine: float
    fastest: Pick | None = None
    least_memory: Pick | None = None
    within: Pick | None = None  # the fastest valid point within the fidelity bound
    within_cosine: float | None = None
    unchecked: list[Point] = field(default_factory=list)  # valid points without a fidelity measurement
    invalid: list[Point] = field(default_factory=list)
    failed: list[Point] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The card as markdown-inline bullet items (**bold**, `code`)."""
        return card_lines(self)


def log_ratio_interval(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Interval of mean(a)/mean(b) from per-repeat values: Welch's t on the logs (the gate's t quantile and
    degrees of freedom), None unless both sides have at least two positive values."""
    from bench.gate.stats import t_ppf, welch_df

    if len(a) < 2 or len(b) < 2 or min(a + b) <= 0:
        return None
    la, lb = [math.log(x) for x in a], [math.log(x) for x in b]
    ma, mb = sum(la) / len(la), sum(lb) / len(lb)
    va = sum((x - ma) ** 2 for x in la) / (len(la) - 1) / len(la)
    vb = sum((x - mb) ** 2 for x in lb) / (len(lb) - 1) / len(lb)
    if va + vb == 0:
        return (math.exp(ma - mb),) * 2
    half = t_ppf(0.5 + confidence / 2, welch_df(va, len(a) - 1, vb, len(b) - 1)) * math.sqrt(va + vb)
    return math.exp(ma - mb - half), math.exp(ma - mb + half)


def worst_cosine(point: Point) -> float | None:
    """The lowest per-row cosine of any ok repeat; None when no repeat measured fidelity."""
    values = [r.fidelity.cosine_min for r in point.ok if r.fidelity is not None]
    return min(values) if values else None


def _ratio(point: Point, base: Point | None, get) -> Ratio | None:
    if base is None:
        return None
    a, b = get(point), get(base)
    if a is None or not b:
        return None
    per_point = [v for r in point.ok if (v := get(Point(point.key, [r]))) is not None]
    per_base = [v for r in base.ok if (v := get(Point(base.key, [r]))) is not None]
    return Ratio(a / b, log_ratio_interval(per_point, per_base), (len(point.ok), len(base.ok)), base)


def _throughput(p: Point) -> float | None:
    return p.throughput


def _memory(p: Point) -> float | None:
    return p.peak_memory_bytes


def verdict(points: list[Point], baselines: Baselines, min_cosine: float = DEFAULT_MIN_COSINE) -> list[Card]:
    """One card per (model, weights, task, workload, device), in the order the points first appear."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        k = p.key
        groups.setdefault((k.model, k.weights, k.task, k.workload, k.device), []).append(p)
    several_runs = len({p.run for p in points}) > 1
    cards = [_card(group, baselines, min_cosine, several_runs) for group in groups.values()]
    return sorted(cards, key=lambda c: c.fastest is None)  # groups where nothing measured last


def _card(points: list[Point], baselines: Baselines, min_cosine: float, several_runs: bool) -> Card:
    first = points[0]
    units = {p.throughput_metric.unit for p in points if p.throughput_metric is not None}
    devices = device_labels([r for p in points for r in p.records])
    weights = "" if first.key.weights == "random" else f" · {first.key.weights} weights"
    base = baselines.baseline
    card = Card(
        title=f"{first.key.model} · {first.key.task} · {'; '.join(devices)}{weights}",
        workload=workload_label(first.first.workload),
        unit=" | ".join(sorted(units)) or "throughput",
        baseline=" ".join(str(base.get(k)) for k in ("backend", "precision") if k in base)
        + (f" batch {base['batch_size']}" if "batch_size" in base else ""),
        several_runs=several_runs,
        min_cosine=min_cosine,
    )
    card.failed = [p for p in points if p.status != "ok"]
    card.invalid = [p for p in points if p.status == "ok" and p.invalid_reasons]
    valid = [p for p in points if p.valid]

    def pick(p: Point | None, get) -> Pick | None:
        if p is None:
            return None
        return Pick(p, get(p), _ratio(p, baselines.of(p), get), baselines.is_baseline(p))

    fast = [p for p in valid if p.throughput is not None]
    card.fastest = pick(max(fast, key=_throughput, default=None), _throughput)
    light = [p for p in valid if p.peak_memory_bytes]
    card.least_memory = pick(min(light, key=_memory, default=None), _memory)
    within = []
    for p in fast:
        cosine = worst_cosine(p)
        if cosine is None and (p.key.backend, p.key.precision) == REFERENCE:
            cosine = 1.0
        if cosine is None:
            card.unchecked.append(p)
        elif cosine >= min_cosine:
            within.append((p, cosine))
    if within:
        best, card.within_cosine = max(within, key=lambda pc: pc[0].throughput)
        card.within = pick(best, _throughput)
    return card


# --- text ----------------------------------------------------------------------------------------------------


def point_label(p: Point, several_runs: bool) -> str:
    label = f"{p.key.backend} {p.key.precision} · batch {p.key.batch_size}"
    if p.key.backend_options not in ("{}", ""):
        label += f" · {p.key.backend_options}"
    return label + (f" ({p.run})" if several_runs and p.run else "")


def fmt_ratio_text(ratio: Ratio | None, pick: Pick, card: Card, what: str) -> str:
    if pick.is_baseline:
        return "the baseline itself"
    if ratio is None:
        return f"no measured baseline ({card.baseline} at batch {pick.point.key.batch_size})"
    text = f"{ratio.value:.2f}× the baseline's {what}"
    if ratio.interval is not None:
        lo, hi = ratio.interval
        text += f" (95% interval {lo:.2f}–{hi:.2f}×, {ratio.repeats[0]} vs {ratio.repeats[1]} repeats)"
    else:
        text += f" ({ratio.repeats[0]} vs {ratio.repeats[1]} repeat{'s' if ratio.repeats[1] != 1 else ''}: no interval)"
    if ratio.baseline.run != pick.point.run and card.several_runs:
        text += f", baseline from {ratio.baseline.run}"
    if ratio.baseline.invalid_reasons:
        text += f" ⚠ against an invalid baseline ({_short(ratio.baseline.invalid_reasons[0], 90)})"
    return text


def fmt_one_minus_cosine(cosine: float | None) -> str:
    """1 − cosine in scientific notation (int8's 4e-07 and fp32's 0 apart), "-" when not measured."""
    if cosine is None:
        return "-"
    gap = 1 - cosine
    return "0" if gap <= 0 else f"{gap:.1e}"


def card_lines(card: Card) -> list[str]:
    from bench.report.tables import fmt_rate
    from bench.summary import fmt_bytes

    lines = []
    if card.fastest is None:
        lines.append("**Fastest**: no valid measured point.")
    else:
        f = card.fastest
        lines.append(
            f"**Fastest**: {point_label(f.point, card.several_runs)} — {fmt_rate(f.value)} {card.unit}, "
            f"{fmt_ratio_text(f.ratio, f, card, 'throughput')}"
        )
    if card.least_memory is not None:
        m = card.least_memory
        life = m.point.lifetime_peak_bytes
        whole = (
            f" (whole-life peak {fmt_bytes(round(life))}: loading, export, compile or quantization included)"
            if life and life > 1.05 * m.value
            else ""
        )
        lines.append(
            f"**Least memory**: {point_label(m.point, card.several_runs)} — {fmt_bytes(round(m.value))} "
            f"measured-phase peak{whole}, {fmt_ratio_text(m.ratio, m, card, 'peak')}"
        )
    bound = f"cosine ≥ {card.min_cosine:g}"
    if card.within is not None:
        w = card.within
        lines.append(
            f"**Fastest with {bound}**: {point_label(w.point, card.several_runs)} — {fmt_rate(w.value)} "
            f"{card.unit}, 1 − cosine {fmt_one_minus_cosine(card.within_cosine)}, "
            f"{fmt_ratio_text(w.ratio, w, card, 'throughput')}"
        )
    else:
        lines.append(f"**Fastest with {bound}**: none of the valid points.")
    if card.unchecked:
        lines.append(
            f"{len(card.unchecked)} valid point{'s' if len(card.unchecked) > 1 else ''} without a fidelity "
            "measurement (not ranked by the bound)."
        )
    if card.invalid:
        lines.append(
            "**Invalid** ⚠ (not ranked; reasons in the points table): "
            + ", ".join(point_label(p, card.several_runs) for p in card.invalid)
        )
    failed: dict[tuple, list[Point]] = {}  # one line per reason: an unsupported precision at every batch size
    for p in card.failed:
        reason = re.sub(r"\s*\(log: [^)]*\)", "", p.errors[0]) if p.errors else p.status
        failed.setdefault((p.status, p.key.backend, p.key.precision, p.key.backend_options, reason), []).append(p)
    for (status, backend, precision, options, reason), group in failed.items():
        batches = ", ".join(dict.fromkeys(str(p.key.batch_size) for p in group))
        where = f"{backend} {precision} · batch {batches}" + (f" · {options}" if options not in ("{}", "") else "")
        runs = list(dict.fromkeys(p.run for p in group))
        where += f" ({', '.join(runs)})" if card.several_runs and any(runs) else ""
        lines.append(f"**{status.capitalize()}** {where}: {_short(reason)}")
    return [" ".join(line.split()) for line in lines]


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card_intro(card: Card) -> str:
    return f"Workload: {card.workload}; baseline: {card.baseline} at the same batch size (and identity)."


def verdict_of_records(records: list[Record], min_cosine: float = DEFAULT_MIN_COSINE) -> list[Card]:
    """The cards of one run directory's records (bench run's summary)."""
    points = group_points([r for r in records if r.serving is None], by_scenario=False)  # levels: bench.serving
    return verdict(points, Baselines(points, dict(DEFAULT_BASELINE)), min_cosine)


def markdown_verdict(cards: list[Card], level: int = 2) -> str:
    parts = [f"{'#' * level} Verdict"]
    for card in cards:
        parts += [
            f"{'#' * (level + 1)} {card.title}",
            card_intro(card),
            "\n".join(f"- {line}" for line in card.lines()),
        ]
    return "\n\n".join(parts) + "\n"


def rich_verdict(cards: list[Card]):
    from rich.console import Group
    from rich.markup import escape
    from rich.panel import Panel

    def markup(text: str) -> str:
        return re.sub(
            r"\\\*\\\*(.+?)\\\*\\\*|\*\*(.+?)\*\*", lambda m: f"[bold]{m.group(2) or m.group(1)}[/bold]", escape(text)
        )

    return Group(
        *[
            Panel(
                "\n".join([escape(card_intro(card)), *(f"• {markup(line)}" for line in card.lines())]),
                title=escape(card.title),
                title_align="left",
            )
            for card in cards
        ]
    )
