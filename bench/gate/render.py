"""The gate's two outputs: GitHub markdown (for $GITHUB_STEP_SUMMARY or a PR comment) and JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.gate.compare import GateResult, MetricComparison, PointIssue, Side, pct
from bench.gate.metrics import GATE_METRICS
from bench.report.points import PointKey, workload_label
from bench.summary import fmt_bytes, fmt_seconds

JSON_SCHEMA = "aigc-bench/compare/1"
ICONS = {"regression": "🔴", "failed": "❌", "inconclusive": "🟡", "improvement": "🟢", "unchanged": "⚪"}
ISSUE_TEXT = {
    "failed": "measured in the baseline, did not measure now",
    "baseline-only": "only in the baseline",
    "current-only": "only in the current run",
    "no-baseline-measurement": "measured now, not in the baseline (no comparison)",
    "not-measured": "measured on neither side",
    "metric-missing": "a metric of the baseline that the current run lacks",
}


def point_label(key: PointKey) -> str:
    label = f"{key.scenario} · {key.model} · {key.backend} {key.precision} · bs {key.batch_size}"
    if key.device != "cpu":
        label += f" · {key.device}"
    if key.serving:  # a serving load level: policy / level kind / offered rate
        label += f" · {key.serving}"
    return label


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return fmt_seconds(value)
    if unit == "bytes":
        return fmt_bytes(int(value))
    if unit == "J/token":  # fractions of a joule: significant digits, not one decimal
        return f"{value:.4g} {unit}"
    return f"{value:,.1f} {unit}"


def fmt_change(ratio: float | None) -> str:
    """1.102 → "+10.2%"; beyond ×10 either way the percentage stops meaning much."""
    if ratio is None:
        return "-"
    if ratio >= 10:
        return "> +900%"
    if ratio <= 0.1:
        return "< −90%"
    return f"{(ratio - 1) * 100:+.1f}%".replace("-", "−")


def fmt_interval(interval: tuple[float, float] | None) -> str:
    if interval is None:
        return "-"
    return f"{fmt_change(interval[0])} … {fmt_change(interval[1])}"


def fmt_level(level: float) -> str:
    """0.95 → "95%", 0.99952 → "99.95%": enough digits to tell the level from 100%."""
    return f"{level * 100:.4g}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _side_line(role: str, side: Side) -> str:
    env = side.environment or {}
    meta = side.meta or {}
    bits = []
    if meta:
        bits.append("saved baseline")
    commit = meta.get("git_commit") or env.get("git_commit")
    if commit:
        bits.append(f"commit {commit[:10]}{' (dirty)' if (meta.get('git_dirty') or env.get('git_dirty')) else ''}")
    if env.get("timestamp"):
        bits.append(f"measured {env['timestamp']}")
    device = env.get("gpu_name") or (env.get("cpu") or {}).get("model")
    if device:
        bits.append(str(device))
    return f"**{role}** `{side.name}`" + (f" ({', '.join(bits)})" if bits else "")


def _note(c: MetricComparison) -> str:
    parts = [c.reason] if c.reason else []
    return "; ".join(parts + c.notes)


def _row(c: MetricComparison) -> list[str]:
    unit = c.metric.unit
    repeats = f"{c.repeats[0]}/{c.repeats[1]}"
    return [
        f"{ICONS[c.verdict]} {c.verdict}",
        point_label(c.key),
        c.metric.name,
        fmt_value(c.baseline_value, unit),
        fmt_value(c.current_value, unit),
        fmt_change(c.ratio),
        fmt_interval(c.interval),
        f"±{pct(c.threshold)}",
        repeats,
        _note(c),
    ]


def to_markdown(result: GateResult) -> str:
    cfg = result.config
    level = 1 - result.gamma
    title = _title(result.outcome)
    lines = [
        f"## {title}",
        "",
        _side_line("Baseline", result.baseline) + "  ",
        _side_line("Current", result.current),
        "",
    ]
    unmatched = [i for i in result.issues if i not in result.failures and i.kind != "metric-missing"]
    lines += _table(
        ["failed", "regression", "inconclusive", "improvement", "unchanged", "other points"],
        [
            [str(len(result.failures))]
            + [str(result.count(v)) for v in ("regression", "inconclusive", "improvement", "unchanged")]
            + [str(len(unmatched))]
        ],
    )
    lines.append("")
    for warning in result.warnings:
        lines.append(f"> ⚠ {warning}  ")
    if result.warnings:
        lines.append("")

    if result.failures:
        lines += ["### Failures", ""]
        lines += _table(
            ["", "point", "what happened"],
            [
                [
                    ICONS["failed"],
                    point_label(i.key),
                    i.detail if i.kind == "failed" else f"{ISSUE_TEXT[i.kind]}: {i.detail}",
                ]
                for i in result.failures
            ],
        )
        lines.append("")
    lines += _alerts_section(result)
    lines += _undecided_section(result)

    header = [
        "verdict",
        "point",
        "metric",
        "baseline",
        "current",
        "change",
        f"{fmt_level(level)} interval",
        "threshold",
        "repeats (base/cur)",
        "note",
    ]
    ordered = result.sorted_comparisons()
    shown = [c for c in ordered if c.verdict != "unchanged"]
    unchanged = [c for c in ordered if c.verdict == "unchanged"]
    if shown:
        lines += ["### Regressions, inconclusive, improvements", ""]
        lines += _table(header, [_row(c) for c in shown])
        lines.append("")
    if unchanged:
        lines += [f"<details><summary>Unchanged ({len(unchanged)})</summary>", ""]
        lines += _table(header, [_row(c) for c in unchanged])
        lines += ["", "</details>", ""]
    if result.noisy:
        lines += [
            "### Noisy repeats",
            "",
            "The worker marked these repeats `valid: false` (too noisy to trust; on a shared machine usually "
            "another process competing for the cores). "
            + (
                "They are compared all the same (invalid_repeats: include)."
                if cfg.invalid_repeats == "include"
                else "The statistics leave them out; a side left with fewer than "
                f"{cfg.min_repeats} valid repeats gets no verdict."
            ),
            "",
        ]
        lines += [f"- {point_label(key)}: {text}" for key, text in result.noisy]
        lines.append("")
    if unmatched:
        lines += ["### Other points", ""]
        lines += _table(
            ["point", "workload", "status", "note"],
            [[point_label(i.key), workload_label(_workload(i.key)), ISSUE_TEXT[i.kind], i.detail] for i in unmatched],
        )
        lines.append("")

    lines += [
        "<details><summary>How to read this</summary>",
        "",
        "- Each metric is compared as the ratio current / baseline. **regression**: the whole interval lies "
        "beyond the threshold on the bad side (higher latency or memory, lower throughput); **improvement**: "
        "beyond it on the good side; **unchanged**: inside ±threshold; **inconclusive**: it straddles a "
        "threshold (or there are too few repeats or samples for a verdict). Exit code 1 on a regression, a "
        "failure, or what the `inconclusive` policy fails (below), else 0.",
        f"- Thresholds: ±{pct(cfg.threshold)} for time and throughput, ±{pct(cfg.memory_threshold)} for memory "
        f"(unless the gate config overrides them per metric or scenario).",
        f"- Intervals: {fmt_level(level)} Student-t intervals of the log ratio, standard error from a "
        f"hierarchical bootstrap ({cfg.bootstrap_resamples} resamples of the repeats, then of the calls "
        f"within each, seed {cfg.seed}), degrees of freedom from the repeats and the pooled noise (Welch)"
        + (
            f", plus a calibrated session noise of {pct(cfg.session_noise)} per side."
            if cfg.session_noise
            else ". No session noise (`session_noise: 0`): a shift of a whole run, which its own repeats cannot "
            "show, is not in the unpaired intervals; `bench session-noise` calibrates it for a runner."
            if any(c.estimate and not c.estimate.paired for c in result.comparisons)
            else "."
        )
        + (
            ' Points measured interleaved (`bench ab`, noted "paired") resample rounds, the same for both '
            "sides, with rounds − 1 degrees of freedom and no session noise."
            if any(c.estimate and c.estimate.paired for c in result.comparisons)
            else ""
        ),
        f"- Multiple comparisons: the metrics of one point that come from the same calls are one family "
        f"(its memory peaks another), a family's p-value Simes' over its metrics; Benjamini–Hochberg at "
        f"false discovery rate {cfg.alpha:g} over the {result.family_size} families "
        f"({result.comparisons_tested} comparisons with an estimate); {result.discoveries} family(ies) "
        f"changed, so every interval is shown at level 1 − {cfg.alpha:g}·max(k, 1)/m = {fmt_level(level)}.",
        _noise_line(result),
        f"- Could not judge (inconclusive: {cfg.inconclusive}): "
        + INCONCLUSIVE_TEXT[cfg.inconclusive].format(level=fmt_level(1 - cfg.alpha))
        + f" Missing points or metrics: {cfg.missing}.",
        (
            f"- Latency, TTFT, TPOT: the {cfg.statistic} of all calls of a side's repeats together (statistic: "
            f"{cfg.statistic}, combine: pooled). Throughput: batch × tokens / that {cfg.statistic} time of its "
            f"source. Memory: each repeat's peak, averaged."
            if cfg.combine == "pooled"
            else f"- Latency, TTFT, TPOT: the {cfg.statistic} call of each repeat "
            f"(statistic: {cfg.statistic}), averaged "
            f"over repeats (combine: mean). Throughput: batch × tokens / that {cfg.statistic} time of its source, "
            f"averaged. Memory: each repeat's peak, averaged."
        ),
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


INCONCLUSIVE_TEXT = {
    "auto": "exit 1 when an inconclusive comparison's own {level} interval lies beyond the threshold on the bad "
    "side (a likely regression), else a warning and exit 0.",
    "fail": "every inconclusive comparison fails the gate (exit 1).",
    "warn": "listed as a warning, exit 0.",
    "pass": "listed, exit 0.",
}


SLO_POLICY_TEXT = {
    "new": "an alert fails the gate unless the baseline's same level broke the same SLO",
    "fail": "every alert fails the gate",
    "warn": "alerts are listed, exit 0",
}


def _alerts_section(result: GateResult) -> list[str]:
    """One line per SLO alert of the current run, as `bench run` prints it, and whether it fails the gate."""
    if not result.slo_alerts:
        return []
    failing = {id(a) for a in result.failing_alerts}
    lines = [
        "### SLO alerts",
        "",
        f"Serving levels of the current run that break their scenario's SLO (slo_alerts: "
        f"{result.config.slo_alerts}: {SLO_POLICY_TEXT[result.config.slo_alerts]}).",
        "",
    ]
    for a in result.slo_alerts:
        icon = "🚨" if id(a) in failing else "⚠️"
        lines.append(f"- {icon} SLO alert: {a.text}; {'also' if a.in_baseline else 'not'} in the baseline")
    return lines + [""]


def _title(outcome: str) -> str:
    head, _, rest = outcome.partition(": ")
    if head == "fail":
        return f"❌ Performance gate: {rest}"
    if head == "warn":
        return f"⚠️ Performance gate: {rest}"
    return "✅ Performance gate: " + outcome


def _noise_line(result: GateResult) -> str:
    cfg = result.config
    if cfg.repeat_noise != "pooled":
        return "- Between-repeat noise: each comparison's own repeats (repeat_noise: own)."
    parts = []
    for side, prior in result.priors.items():
        if prior is None:
            parts.append(f"{side}: own repeats only (fewer than 2 points with repeats)")
        else:
            df = "∞" if math.isinf(prior.df) else f"{prior.df:.3g}"
            parts.append(
                f"{side}: pooled sd {math.sqrt(prior.variance) * 100:.3g}% per repeat, worth {df} df, "
                f"from {prior.entries} estimates of {prior.points} points"
            )
    return (
        "- Between-repeat noise pooled over a side's points and metrics (empirical Bayes: each estimate shrunk "
        "towards the pooled value): " + "; ".join(parts) + "."
    )


def fmt_detectable(c: MetricComparison) -> str:
    if c.detectable is None:
        return "unknown: " + (c.reason or "no estimate")
    return fmt_change(c.detectable)


def undecided_points(result: GateResult) -> list[tuple[PointKey, list[MetricComparison], MetricComparison]]:
    """Per point the gate could not judge: its inconclusive comparisons and the one that could have detected
    the smallest change (in slowdown terms: a rate's drop d counts as a time's rise 1/d)."""
    out = []
    for key in result.undecided_points():
        cs = [c for c in result.undecided if c.key == key]

        def size(c: MetricComparison) -> float:
            if c.detectable is None:
                return math.inf
            return 1 / c.detectable if c.metric.higher_is_better else c.detectable

        out.append((key, cs, min(cs, key=size)))
    return out


def _undecided_section(result: GateResult) -> list[str]:
    rows = []
    for key, cs, best in undecided_points(result):
        likely = [c.metric.name for c in cs if c.likely_regression]
        rows.append(
            [
                point_label(key),
                ", ".join(c.metric.name for c in cs),
                f"{fmt_detectable(best)} ({best.metric.name})" if best.detectable is not None else fmt_detectable(best),
                ("yes: " + ", ".join(likely)) if likely else "no",
            ]
        )
    if not rows:
        return []
    return (
        [
            "### Could not judge",
            "",
            f"The gate could not judge these points (inconclusive: {result.config.inconclusive}). Smallest change "
            f"it could have detected: the smallest slowdown (or throughput drop) that would have been called a "
            f"regression at this level with this noise.",
            "",
        ]
        + _table(["point", "inconclusive metrics", "smallest detectable change", "likely regression"], rows)
        + [""]
    )


def _workload(key: PointKey) -> dict[str, Any]:
    return json.loads(key.workload)


def _key_json(key: PointKey) -> dict[str, Any]:
    data = dict(key.__dict__)
    data["workload"] = json.loads(key.workload)
    data["backend_options"] = json.loads(key.backend_options)
    return data


def _num(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _side_json(side: Side) -> dict[str, Any]:
    env = side.environment or {}
    return {
        "name": side.name,
        "path": str(side.path),
        "saved_baseline": side.meta,
        "git_commit": env.get("git_commit"),
        "measured_at": env.get("timestamp"),
        "injected_slowdown": side.injected_slowdown,
    }


def _comparison_json(c: MetricComparison) -> dict[str, Any]:
    est = c.estimate
    return {
        "point": _key_json(c.key),
        "metric": c.metric.name,
        "direction": c.metric.direction,
        "unit": c.metric.unit,
        "verdict": c.verdict,
        "reason": c.reason or None,
        "threshold": c.threshold,
        "baseline": _num(c.baseline_value),
        "current": _num(c.current_value),
        "ratio": _num(c.ratio),
        "interval": list(c.interval) if c.interval else None,
        "p_value": _num(c.p_value),
        "log_ratio_se": _num(est.se) if est else None,
        "df": _num(est.df) if est else None,
        "paired": est.paired if est else None,
        "repeats": {"baseline": c.repeats[0], "current": c.repeats[1]},
        "repeats_needed": c.repeats_needed,
        "smallest_detectable": _num(c.detectable),
        "likely_regression": c.likely_regression if c.verdict == "inconclusive" else None,
        "missing": c.missing,
        "family": c.family,
        "notes": c.notes,
    }


def _issue_json(i: PointIssue) -> dict[str, Any]:
    return {"point": _key_json(i.key), "kind": i.kind, "detail": i.detail}


def to_json(result: GateResult) -> dict[str, Any]:
    cfg = result.config
    return {
        "schema": JSON_SCHEMA,
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "baseline": _side_json(result.baseline),
        "current": _side_json(result.current),
        "counts": {
            "failed": len(result.failures),
            **{v: result.count(v) for v in ("regression", "inconclusive", "improvement", "unchanged")},
            "not_judged_points": len(result.undecided_points()),
            "other_points": len([i for i in result.issues if i not in result.failures]),
        },
        "settings": {
            "threshold": cfg.threshold,
            "memory_threshold": cfg.memory_threshold,
            "alpha": cfg.alpha,
            "min_repeats": cfg.min_repeats,
            "min_samples": cfg.min_samples,
            "invalid_repeats": cfg.invalid_repeats,
            "session_noise": cfg.session_noise,
            "statistic": cfg.statistic,
            "combine": cfg.combine,
            "bootstrap_resamples": cfg.bootstrap_resamples,
            "seed": cfg.seed,
            "repeat_noise": cfg.repeat_noise,
            "inconclusive": cfg.inconclusive,
            "missing": cfg.missing,
            "slo_alerts": cfg.slo_alerts,
            "pooled_noise": {
                side: None
                if p is None
                else {"sd": math.sqrt(p.variance), "df": _num(p.df), "estimates": p.entries, "points": p.points}
                for side, p in result.priors.items()
            },
            "family_size": result.family_size,
            "discoveries": result.discoveries,
            "comparisons_tested": result.comparisons_tested,
            "interval_level": 1 - result.gamma,
            "metrics": {m.name: m.direction for m in GATE_METRICS},
        },
        "warnings": result.warnings,
        "environment_differences": [
            {"what": d.what, "baseline": d.baseline, "current": d.current} for d in result.env_differences
        ],
        "failures": [_issue_json(i) for i in result.failures],
        "slo_alerts": [
            {
                "point": _key_json(a.key),
                "slo": a.slo,
                "alert": a.text,
                "in_baseline": a.in_baseline,
                "fails": any(a is f for f in result.failing_alerts),
            }
            for a in result.slo_alerts
        ],
        "noisy_repeats": [{"point": _key_json(key), "detail": text} for key, text in result.noisy],
        "comparisons": [_comparison_json(c) for c in result.sorted_comparisons()],
        "not_judged": [
            {
                "point": _key_json(key),
                "metrics": [c.metric.name for c in cs],
                "smallest_detectable": {"metric": best.metric.name, "ratio": _num(best.detectable)}
                if best.detectable is not None
                else None,
                "likely_regression": any(c.likely_regression for c in cs),
            }
            for key, cs, best in undecided_points(result)
        ],
        "other_points": [_issue_json(i) for i in result.issues if i not in result.failures],
    }
