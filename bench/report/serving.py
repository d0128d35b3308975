"""The report's serving section: max-sustainable-rate table, a table of levels, and per (run, scenario,
model) charts of TTFT / TPOT / E2E p50-p95-p99 against offered rate per policy × precision (SLO limits as
dashed lines) and of goodput against offered rate. Reads only the records' `serving` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from bench.report.render import Block, Bullets, Heading, Image, Paragraph  # noqa: E402
from bench.report.tables import Table  # noqa: E402
from bench.serving import summary  # noqa: E402

PERCENTILES = ("p50", "p95", "p99")
STYLES = {"p50": ":", "p95": "-", "p99": "--"}


def _series(records: list[Any]) -> dict[str, list[Any]]:
    """'policy · precision · backend bsN' -> its rate levels, by offered rate."""
    out: dict[str, list[Any]] = {}
    for r in records:
        s = r.serving
        if s.kind == "level" and r.status == "ok" and s.e2e_s is not None:
            out.setdefault(f"{s.policy} · {r.precision} · {r.backend} bs{r.batch_size}", []).append(r)
    return {k: sorted(v, key=lambda r: r.serving.requested_rate_per_s) for k, v in out.items()}


def _latency_chart(series: dict[str, list[Any]], slo: dict[str, float], title: str, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, label) in zip(axes[0], (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E"))):
        for i, (name, recs) in enumerate(series.items()):
            rates = [r.serving.requested_rate_per_s for r in recs]
            for pct in PERCENTILES:
                values = [
                    getattr(getattr(r.serving, f"{metric}_s"), pct)
                    if getattr(r.serving, f"{metric}_s")
                    else float("nan")
                    for r in recs
                ]
                ax.plot(
                    rates,
                    values,
                    STYLES[pct],
                    marker="o",
                    ms=3,
                    color=colors[i % len(colors)],
                    label=f"{name} {pct}" if metric == "ttft" else None,
                )
        for key, limit in slo.items():
            if key.startswith(f"{metric}_"):
                ax.axhline(limit, color="red", lw=1, ls="-.", label=f"SLO {key}" if metric == "ttft" else None)
                ax.annotate(
                    f"SLO {key.split('_')[-2]} {limit:g} s",
                    (0.01, limit),
                    xycoords=("axes fraction", "data"),
                    color="red",
                    fontsize=7,
                    va="bottom",
                )
        ax.set(xscale="log", yscale="log", xlabel="offered rate (requests/s)", ylabel=f"{label} (s)", title=label)
        _rate_ticks(ax, series)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.legend(loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * len(series), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _rate_ticks(ax: Any, series: dict[str, list[Any]]) -> None:
    """Ticks at the offered rates, written plainly (a log axis would print 4×10^0)."""
    from matplotlib.ticker import NullFormatter

    rates = sorted({r.serving.requested_rate_per_s for recs in series.values() for r in recs})
    ax.set_xticks(rates, [f"{x:g}" for x in rates])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _goodput_chart(series: dict[str, list[Any]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    top = 0.0
    for name, recs in series.items():
        rates = [r.serving.requested_rate_per_s for r in recs]
        good = [r.serving.attainment.goodput_per_s if r.serving.attainment else float("nan") for r in recs]
        ax.plot(rates, good, marker="o", label=name)
        top = max(top, *rates)
    ax.plot([0, top], [0, top], color="grey", ls=":", label="offered (every request within the SLO)")
    ax.set(xlabel="offered rate (requests/s)", ylabel="goodput (requests/s within every SLO)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def section(runs: list[Any], charts_dir: Path) -> tuple[list[Block], list[Path]]:
    """Blocks and chart files for every serving record of `runs` (nothing when there are none)."""
    everything = [r for run in runs for r in summary.serving_records(run.records)]
    if not everything:
        return [], []
    blocks: list[Block] = [
        Heading(2, "Serving"),
        Paragraph(
            "Load levels: requests arrive at the offered rate (seeded, the same for every point) and are served by "
            "the batching policy. **Max sustainable rate** is the highest offered rate whose level met every SLO "
            "percentile with SLO attainment at least the target, without saturating and with the load generator "
            "on time. Definitions: docs/serving.md."
        ),
    ]
    best_rows = []
    for r in everything:
        s = r.serving
        if s.kind == "summary":
            best_rows.append(
                [
                    r.scenario,
                    r.model,
                    r.backend,
                    r.precision,
                    s.policy,
                    str(r.batch_size),
                    r.status
                    if r.status != "ok"
                    else (f"{s.max_sustainable_rate_per_s:.3g}" if s.max_sustainable_rate_per_s else "none"),
                    f"{s.lowest_failing_rate_per_s:.3g}" if s.lowest_failing_rate_per_s else "-",
                    ", ".join(f"{k} {v:g}" for k, v in s.slo.items()) or "-",
                    f"{s.attainment_target:.0%}",
                    (r.error or "")[:120],
                ]
            )
    blocks += [
        Heading(3, "Max sustainable rate"),
        Table(
            [
                "scenario",
                "model",
                "backend",
                "precision",
                "batching",
                "max batch",
                "max sustainable req/s",
                "lowest failing req/s",
                "SLO",
                "attainment target",
                "note",
            ],
            best_rows,
        ),
        Heading(3, "Levels"),
        Table(list(summary.COLUMNS), summary.rows(everything)),
    ]
    found = summary.alerts(everything)
    if found:
        blocks += [Heading(3, "SLO alerts"), Bullets(found)]
    paths = []
    for run in runs:
        recs = summary.serving_records(run.records)
        for scenario, model in dict.fromkeys((r.scenario, r.model) for r in recs):
            mine = [r for r in recs if (r.scenario, r.model) == (scenario, model)]
            series = _series(mine)
            if not series:
                continue
            slo = next((r.serving.slo for r in mine if r.serving.slo), {})
            title = f"{run.label} · {scenario} · {model}"
            slug = f"serving-{run.label}-{scenario}-{model}".replace("/", "_")
            lat = _latency_chart(series, slo, title, charts_dir / f"{slug}-latency.png")
            good = _goodput_chart(series, title, charts_dir / f"{slug}-goodput.png")
            blocks += [
                Heading(3, f"Charts · {title}"),
                Image(
                    lat,
                    "Latency against offered rate",
                    "TTFT, TPOT and E2E p50 (dotted), p95 (solid), p99 (dashed) per policy · precision; "
                    "SLO limits in red",
                ),
                Image(
                    good,
                    "Goodput against offered rate",
                    "requests/s that met every SLO; the grey line is the offered rate",
                ),
            ]
            paths += [lat, good]
    return blocks, paths
