"""The regression gate: BASELINE and CURRENT (run directories or saved baselines) in, verdicts out.

1. Both sides load through the report's loader; points are grouped with the report's `PointKey`
   (scenario, model, weights, task, device, backend, precision, batch size, workload, backend options),
   so two points match exactly when the report would put them side by side. Unmatched points are listed.
2. Environments that differ in GPU model, driver, CUDA, torch or ONNX Runtime (and, for points measured
   on the CPU, the CPU model and torch's thread count) are refused unless allow_env_change.
3. Point status first: a point measured in the baseline that now fails, times out or is unsupported in
   any repeat is a failure (worse than a regression); so are a point or metric of the baseline that the current
   run lacks, unless `missing: warn`.
4. Every gated metric (metrics.py) of every matched point: unpaired sides with their between-repeat noise pooled
   over the side's points (empirical Bayes) or their own hierarchical bootstrap; paired rounds when both sides
   are arms of one `bench ab` sweep. Student-t interval of the ratio; Benjamini–Hochberg over point families
   (Simes within); verdicts (stats.py). Exit code: 1 on a failure, a regression or what the `inconclusive`
   policy fails, else 0 (docs/gate.md).
5. SLO alerts: the current run's fixed-rate serving levels that break their scenario's SLO, each marked whether
   the baseline's same level broke it too; they fail the gate per the `slo_alerts` policy.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from bench.errors import BenchInputError
from bench.gate import baselines, stats
from bench.gate.config import GateConfig
from bench.gate.environment import EnvDifference, environment_differences
from bench.gate.metrics import GATE_METRICS, GateMetric, RepeatReading, read_repeat
from bench.report.points import Point, PointKey, group_points, measured
from bench.report.runs import load_runs
from bench.results import Record

VERDICT_ORDER = ("regression", "inconclusive", "improvement", "unchanged")


@dataclass
class Side:
    name: str  # as the user gave it
    path: Path
    records: list[Record]
    environment: dict[str, Any] | None
    meta: dict[str, Any] | None  # baseline.json when this is a saved baseline

    @property
    def injected_slowdown(self) -> float | None:
        values = {r.details.get("injected_slowdown") for r in self.records if r.details.get("injected_slowdown")}
        return max(values) if values else None


def load_side(arg: str, baseline_dir: Path | None = None) -> Side:
    path = baselines.resolve(arg, baseline_dir)
    run = load_runs([path])[0]
    return Side(arg, path, run.records, run.environment, baselines.read_meta(path))


# --- results ----------------------------------------------------------------------------------------------


@dataclass
class Pending:
    """An unpaired comparison waiting for its sides' pooled noise: its repeats' own values of the metric per side,
    the session noise it adds, and the sides' bootstrap, run only where needed (no pooled noise, or a statistic
    whose within-run part the bootstrap must give)."""

    name: str
    values: tuple[list[float], list[float]]
    session_noise: float
    pooled_rule: bool  # a pooled quantile (no within-run part to floor at)
    bootstrap: Callable[[], dict[str, dict[str, stats.SideBootstrap]]]

    def side(self, index: int) -> stats.SideBootstrap:
        return self.bootstrap()[("baseline", "current")[index]][self.name]


@dataclass
class MetricComparison:
    key: PointKey
    metric: GateMetric
    threshold: float
    repeats: tuple[int, int]  # ok repeats with this metric: baseline, current
    baseline_value: float | None = None
    current_value: float | None = None
    estimate: stats.RatioEstimate | None = None
    p_value: float | None = None
    interval: tuple[float, float] | None = None
    verdict: stats.Verdict = "inconclusive"
    reason: str = ""  # why inconclusive, in words
    repeats_needed: int | None = None
    notes: list[str] = field(default_factory=list)
    missing: bool = False  # measured in the baseline, not (or not in every repeat) in the current run
    family: str = "calls"  # a point's time and rate metrics (the same calls) are one family; memory, energy others
    # inconclusive only: the smallest change in the bad direction this comparison would have called a regression
    # (a ratio), and whether its unadjusted 1 − alpha interval lies beyond the threshold on the bad side
    detectable: float | None = None
    likely_regression: bool = False
    pending: Pending | None = field(default=None, repr=False)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value and self.current_value is not None:
            return self.current_value / self.baseline_value
        return None


PointProblem = Literal[
    "failed", "baseline-only", "current-only", "no-baseline-measurement", "not-measured", "metric-missing"
]
MISSING_KINDS = ("baseline-only", "metric-missing")  # vanished points and metrics: failures unless `missing: warn`


@dataclass
class PointIssue:
    key: PointKey
    kind: PointProblem
    detail: str


@dataclass
class SLOAlert:
    """A fixed-rate serving level of the current run that broke an SLO of its scenario."""

    key: PointKey
    slo: str  # the SLO key, e.g. ttft_p95_s
    text: str  # 'p95 TTFT 0.31 s > 0.2 s at 16 req/s, int8 dynamic (scenario, model, backend, bs8)'
    in_baseline: bool  # the baseline's same level broke the same SLO


@dataclass
class GateResult:
    baseline: Side
    current: Side
    config: GateConfig
    comparisons: list[MetricComparison]
    issues: list[PointIssue]
    env_differences: list[EnvDifference]
    warnings: list[str]
    noisy: list[tuple[PointKey, str]]  # points with repeats the worker marked valid: false, and why
    family_size: int  # families (a point's metrics from the same calls; its memory) that entered Benjamini–Hochberg
    discoveries: int  # k: families BH rejected
    gamma: float  # intervals are (1 − gamma) intervals
    comparisons_tested: int = 0  # comparisons with an estimate, in those families
    priors: dict[str, stats.NoisePrior | None] = field(default_factory=dict)  # pooled noise per side
    slo_alerts: list[SLOAlert] = field(default_factory=list)

    @property
    def failing_alerts(self) -> list[SLOAlert]:
        """The SLO alerts the `slo_alerts` policy fails the gate on."""
        policy = self.config.slo_alerts
        return [] if policy == "warn" else [a for a in self.slo_alerts if policy == "fail" or not a.in_baseline]

    @property
    def failures(self) -> list[PointIssue]:
        kinds = ("failed",) + (MISSING_KINDS if self.config.missing == "fail" else ())
        return [i for i in self.issues if i.kind in kinds]

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.comparisons)

    @property
    def undecided(self) -> list[MetricComparison]:
        """Comparisons the gate could not judge (inconclusive, not already a missing-metric issue)."""
        return [c for c in self.comparisons if c.verdict == "inconclusive" and not c.missing]

    def undecided_points(self) -> list[PointKey]:
        return list(dict.fromkeys(c.key for c in self.undecided))

    def _fail_reasons(self) -> list[str]:
        reasons = []
        if self.failures:
            reasons.append("failures")
        if self.count("regression"):
            reasons.append("regression")
        if self.failing_alerts:
            new = "" if self.config.slo_alerts == "fail" else "new "
            reasons.append(f"{len(self.failing_alerts)} {new}SLO alert(s)")
        policy, points = self.config.inconclusive, len(self.undecided_points())
        if policy == "fail" and points:
            reasons.append(f"could not judge {points} point(s)")
        elif policy == "auto":
            likely = len({c.key for c in self.undecided if c.likely_regression})
            if likely:
                reasons.append(f"likely regression at {likely} point(s) it could not judge")
        return reasons

    @property
    def exit_code(self) -> int:
        """1: a failure, a regression, or an inconclusive result the `inconclusive` policy fails; else 0."""
        return 1 if self._fail_reasons() else 0

    @property
    def outcome(self) -> str:
        """ "fail: …", "warn: could not judge N point(s)", "pass: N point(s) not judged (inconclusive: pass)" or
        "pass"."""
        reasons = self._fail_reasons()
        if reasons:
            return "fail: " + " and ".join(reasons)
        points = len(self.undecided_points())
        missing = [i for i in self.issues if i.kind in MISSING_KINDS]
        if points and self.config.inconclusive == "pass":
            return f"pass: {points} point(s) not judged (inconclusive: pass)"
        if points or missing or self.slo_alerts:
            what = [f"could not judge {points} point(s)"] if points else []
            what += [f"{len(missing)} point(s) or metric(s) missing (missing: warn)"] if missing else []
            what += [f"{len(self.slo_alerts)} SLO alert(s) ({_alerts_passed(self.config)})"] if self.slo_alerts else []
            return "warn: " + " and ".join(what)
        return "pass"

    def sorted_comparisons(self) -> list[MetricComparison]:
        """Regressions first (largest slowdown first), then inconclusive, improvements, unchanged."""

        def badness(c: MetricComparison) -> float:
            r = c.ratio or 1.0
            return -(math.log(r) * (-1 if c.metric.higher_is_better else 1)) if r > 0 else 0.0

        return sorted(self.comparisons, key=lambda c: (VERDICT_ORDER.index(c.verdict), badness(c)))


def _alerts_passed(config: GateConfig) -> str:
    return "slo_alerts: warn" if config.slo_alerts == "warn" else "each also in the baseline"


def slo_alerts(baseline: Side, current: Side) -> list[SLOAlert]:
    """The current run's SLO alerts (bench.serving.summary), each marked whether the baseline's level with the
    same point key (policy and rate included) broke the same SLO."""
    from bench.serving.summary import alert_items

    before = {(PointKey.of(r), key) for r, key, _ in alert_items(baseline.records)}
    return [
        SLOAlert(PointKey.of(r), key, text, (PointKey.of(r), key) in before)
        for r, key, text in alert_items(current.records)
    ]


# --- the gate ---------------------------------------------------------------------------------------------


def compare(baseline: Side, current: Side, config: GateConfig, allow_env_change: bool = False) -> GateResult:
    base_points = {p.key: p for p in group_points(baseline.records)}
    cur_points = {p.key: p for p in group_points(current.records)}
    matched = [k for k in cur_points if k in base_points]
    if not matched:
        raise BenchInputError(
            current.name,
            f"no point matches one of {baseline.name} (matched on scenario, "
            "model, weights, task, device, backend, precision, batch size, workload and backend "
            "options)",
        )
    differences = environment_differences(
        baseline.environment, current.environment, cpu=any(k.device == "cpu" for k in matched)
    )
    if differences and not allow_env_change:
        raise BenchInputError(
            current.name,
            f"environment differs from {baseline.name}'s: "
            + "; ".join(map(str, differences))
            + " (pass --allow-env-change to compare anyway)",
        )

    issues = _unmatched(base_points, cur_points)
    comparisons: list[MetricComparison] = []
    noisy: list[tuple[PointKey, str]] = []
    for key in matched:
        b, c = base_points[key], cur_points[key]
        issue = _point_issue(b, c)
        if issue is not None:
            issues.append(issue)
        noisy += [(key, text) for text in invalid_repeats(b, c)]
        if b.ok and c.ok:
            comparisons += _compare_point(b, c, config)

    issues += [PointIssue(c.key, "metric-missing", f"{c.metric.name}: {c.reason}") for c in comparisons if c.missing]
    priors = _estimate_plain(comparisons, config)
    gamma, k, tested = _verdicts(comparisons, config)

    warnings = [
        f"{side.name} was measured with the test-only slowdown knob BENCH_INJECT_SLOWDOWN="
        f"{side.injected_slowdown:g} active: its numbers are not real measurements"
        for side in (baseline, current)
        if side.injected_slowdown
    ]
    if differences:
        warnings.append(
            "environments differ (compared anyway, --allow-env-change): " + "; ".join(map(str, differences))
        )
    for name in config.scenarios:
        if not any(k.scenario == name for k in matched):
            warnings.append(f"gate config: scenario {name!r} matches no compared point")
    families = {(c.key, c.family) for c in comparisons if c.estimate is not None}
    return GateResult(
        baseline,
        current,
        config,
        comparisons,
        issues,
        differences,
        warnings,
        noisy,
        family_size=len(families),
        discoveries=k,
        gamma=gamma,
        comparisons_tested=tested,
        priors=priors,
        slo_alerts=slo_alerts(baseline, current),
    )


def noise_prior(values: list[list[float]], keys: list[PointKey]) -> stats.NoisePrior | None:
    """One side's pooled between-repeat noise from its time metrics (rates repeat their source's noise): the
    sample variance of each metric's per-repeat values with R − 1 degrees of freedom; the total is capped at
    the points' degrees of freedom, Σ (R_point − 1), since the metrics of one point are one measurement."""
    repeats: dict[PointKey, int] = {}
    for vals, key in zip(values, keys):
        repeats[key] = max(repeats.get(key, 0), len(vals))
    usable = [v for v in values if len(v) >= 2]
    return stats.fit_noise_prior(
        [stats.repeat_variance(v) for v in usable],
        [len(v) - 1 for v in usable],
        max_total_df=sum(r - 1 for r in repeats.values()),
        points=len(repeats),
    )


def _estimate_plain(comparisons: list[MetricComparison], config: GateConfig) -> dict[str, stats.NoisePrior | None]:
    """Estimates of the unpaired comparisons: time and rate metrics with each side's noise pooled over its
    points and metrics (repeat_noise: pooled), memory and energy with their own."""
    plain = [c for c in comparisons if c.pending is not None]
    timed = [c for c in plain if c.metric.kind == "time"]
    priors: dict[str, stats.NoisePrior | None] = {"baseline": None, "current": None}
    design = [1.0, 1.0]
    if config.repeat_noise == "pooled":
        for i, side in enumerate(priors):
            priors[side] = noise_prior([c.pending.values[i] for c in timed], [c.key for c in timed])
            pooled = [c.pending for c in timed if c.pending.pooled_rule]
            if priors[side] is not None and pooled:
                design[i] = stats.design_effect([p.side(i) for p in pooled], [p.values[i] for p in pooled])
    for c in plain:
        p = c.pending
        use = (priors["baseline"], priors["current"]) if c.metric.kind in ("time", "rate") else (None, None)
        factor = (design[0], design[1]) if p.pooled_rule else (1.0, 1.0)
        c.estimate = stats.ratio_estimate(
            c.baseline_value,
            p.side(0),
            c.current_value,
            p.side(1),
            session_noise=p.session_noise,
            priors=use,
            values=p.values,
            design=factor,
        )
        if any(use) and (c.estimate.prior_df[0] or c.estimate.prior_df[1]):
            c.notes.append(
                f"noise pooled over the run's points (+{c.estimate.prior_df[0]:.3g}/+{c.estimate.prior_df[1]:.3g} df)"
            )
        c.pending = None
    return priors


def _verdicts(comparisons: list[MetricComparison], config: GateConfig) -> tuple[float, int, int]:
    """Benjamini–Hochberg over families (a point's metrics from the same calls, its memory), each family's
    p-value Simes' over its members; intervals at 1 − gamma; a change only in a family BH rejected."""
    tested = [c for c in comparisons if c.estimate is not None]
    members: dict[tuple[PointKey, str], list[MetricComparison]] = {}
    for c in tested:
        c.p_value = c.estimate.p_value(c.threshold)
        members.setdefault((c.key, c.family), []).append(c)
    family_p = {f: stats.simes([c.p_value for c in cs]) for f, cs in members.items()}
    gamma, k = stats.family_level(list(family_p.values()), config.alpha)
    for family, cs in members.items():
        for c in cs:
            c.interval = c.estimate.interval(gamma)
            c.verdict = stats.verdict(c.interval, c.threshold, c.metric.higher_is_better)
            if c.verdict in ("regression", "improvement") and family_p[family] > gamma:
                c.verdict = "inconclusive"
                c.reason = (
                    f"beyond the threshold alone, not with its point's {len(cs)} metrics together "
                    f"(Simes p {family_p[family]:.3g} > {gamma:.3g})"
                )
            elif c.verdict == "inconclusive":
                c.repeats_needed = c.estimate.repeats_needed(c.threshold, gamma)
                c.reason = _straddle_reason(c)
            if c.verdict == "inconclusive":
                c.detectable = detectable_change(c.estimate, c.threshold, gamma, c.metric.higher_is_better)
                lo, hi = c.estimate.interval(config.alpha)
                c.likely_regression = hi < 1 - c.threshold if c.metric.higher_is_better else lo > 1 + c.threshold
    return gamma, k, len(tested)


def detectable_change(estimate: stats.RatioEstimate, threshold: float, gamma: float, higher_is_better: bool) -> float:
    """The smallest true ratio on the bad side that, measured with this standard error and these degrees of
    freedom, would have been called a regression when its estimate landed on it (half the time)."""
    q = stats.t_ppf(1 - gamma / 2, estimate.df) * estimate.se
    return math.exp(math.log1p(-threshold) - q) if higher_is_better else math.exp(math.log1p(threshold) + q)


def _unmatched(base_points: dict[PointKey, Point], cur_points: dict[PointKey, Point]) -> list[PointIssue]:
    base_only = [k for k in base_points if k not in cur_points]
    cur_only = [k for k in cur_points if k not in base_points]
    return [PointIssue(k, "baseline-only", _nearest(k, cur_only)) for k in base_only] + [
        PointIssue(k, "current-only", _nearest(k, base_only)) for k in cur_only
    ]


def _nearest(key: PointKey, others: list[PointKey]) -> str:
    """Which fields differ from the most similar unmatched point of the same scenario and model on the other
    side (a changed workload, batch size, …)."""
    best: list[str] | None = None
    for other in others:
        if (other.scenario, other.model) != (key.scenario, key.model):
            continue
        diff = [f for f in key.__dataclass_fields__ if getattr(key, f) != getattr(other, f)]
        if best is None or len(diff) < len(best):
            best = diff
    if best and len(best) <= 2:
        return "closest point on the other side differs in " + ", ".join(f.replace("_", " ") for f in best)
    return "no similar point on the other side"


def _point_issue(b: Point, c: Point) -> PointIssue | None:
    b_bad = [r for r in b.records if not measured(r)]
    c_bad = [r for r in c.records if not measured(r)]
    if not b.ok:
        if c.ok:
            return PointIssue(c.key, "no-baseline-measurement", f"baseline: {'; '.join(b.errors)}")
        return PointIssue(c.key, "not-measured", f"neither side measured it: {'; '.join(c.errors)}")
    if c_bad and (not c.ok or not b_bad):
        what = f"{len(c_bad)} of {len(c.records)} repeat(s) did not measure"
        return PointIssue(c.key, "failed", f"{what}: {'; '.join(c.errors)}")
    return None


def _seed(config: GateConfig, key: PointKey, side: str) -> np.random.Generator:
    """A generator per (point, side): results do not depend on the order of points or on PYTHONHASHSEED."""
    tag = zlib.crc32(repr((key, side)).encode())
    return np.random.default_rng([config.seed, tag])


def _compare_point(b: Point, c: Point, config: GateConfig) -> list[MetricComparison]:
    metrics = [m for m in GATE_METRICS if config.enabled(b.key.scenario, m)]
    used = {"baseline": usable_repeats(b, config), "current": usable_repeats(c, config)}
    q, pooled = config.quantile, config.combine == "pooled"
    every = {side: [read_repeat(r, metrics, q) for r in point.ok] for side, point in (("baseline", b), ("current", c))}
    kept = {id(r) for records in used.values() for r in records}
    timing = {
        side: [rd for rd, r in zip(every[side], point.ok) if id(r) in kept]
        for side, point in (("baseline", b), ("current", c))
    }
    notes = _point_notes(b, c, config)
    comparisons: list[MetricComparison] = []
    rules = []
    for metric in metrics:
        if metric.kind == "serving" and (zero := _serving_zero(b.key, metric, every, config, notes)) is not None:
            comparisons.append(zero)
            continue

        def having(rds: list[RepeatReading]) -> list[RepeatReading]:
            return [rd for rd in rds if rd.repeat.values.get(metric.name, 0) > 0]  # noqa: B023

        if (
            not having(every["baseline"])
            and not having(every["current"])
            and not any(_stored_only(rd, metric) for rds in every.values() for rd in rds)
        ):
            continue  # e.g. CUDA memory on a CPU run
        # `valid: false` is about timing noise: memory peaks of those repeats are as good as any
        readings = every if metric.kind == "memory" else timing
        left_out = {side: len(every[side]) - len(readings[side]) for side in every}
        have = {side: having(rds) for side, rds in readings.items()}
        comp = MetricComparison(
            b.key,
            metric,
            config.threshold_for(b.key.scenario, metric),
            (len(have["baseline"]), len(have["current"])),
            notes=list(notes),
            family="calls" if metric.kind in ("time", "rate") else metric.kind,
        )
        comparisons.append(comp)
        for side in ("baseline", "current"):  # shown even without a verdict: all ok repeats when none is usable
            shown = have[side] or having(every[side])
            if shown:
                setattr(
                    comp, f"{side}_value", stats.side_estimate([rd.repeat for rd in shown], metric.rule_at(q, pooled))
                )
        why = _insufficient(metric, have, readings, left_out, config)
        if why:
            comp.reason = why
            # the baseline measured it, the current run lost it (in some or every repeat): the gate's failure
            comp.missing = (
                bool(having(every["baseline"]))
                and len(have["current"]) < len(readings["current"])
                and not any(_stored_only(rd, metric) for rd in readings["current"])
            )
            continue
        rules.append((comp, metric, readings))
        _summary_only_note(comp, have)

    # One bootstrap per side and set of repeats, all its metrics together (a repeat drawn once counts for
    # every metric): the timing metrics over the valid repeats, memory over all ok repeats. Sides measured in
    # rounds of one interleaved sweep (bench ab) are bootstrapped as pairs.
    for group in (timing, every):
        members = [(comp, metric) for comp, metric, readings in rules if readings is group]
        if not members:
            continue
        group_rules = [m.rule_at(q, pooled) for _, m in members]
        rounds = paired_rounds(group["baseline"], group["current"], config.min_repeats)
        if rounds is not None:
            pairs = stats.bootstrap_pairs(
                [rd.repeat for rd, _ in rounds],
                [rd.repeat for _, rd in rounds],
                group_rules,
                config.bootstrap_resamples,
                _seed(config, b.key, "pairs"),
            )
            for comp, metric in members:  # the values compared are those of the rounds both sides have
                rule = metric.rule_at(q, pooled)
                comp.baseline_value = stats.side_estimate([rd.repeat for rd, _ in rounds], rule)
                comp.current_value = stats.side_estimate([rd.repeat for _, rd in rounds], rule)
                comp.estimate = stats.paired_ratio_estimate(comp.baseline_value, comp.current_value, pairs[metric.name])
                comp.notes.append(f"paired: {len(rounds)} interleaved rounds (bench ab)")
            continue

        def bootstrap(group=group, group_rules=group_rules, done={}):  # noqa: B006 (one cache per group)
            if not done:
                done.update(
                    {
                        side: stats.bootstrap_side(
                            [rd.repeat for rd in group[side]],
                            group_rules,
                            config.bootstrap_resamples,
                            _seed(config, b.key, side),
                        )
                        for side in ("baseline", "current")
                    }
                )
            return done

        for comp, metric in members:  # estimated once every point's noise is known (_estimate_plain)
            rule = metric.rule_at(q, pooled)
            comp.pending = Pending(
                metric.name,
                tuple([rd.repeat.values[metric.name] for rd in group[side]] for side in ("baseline", "current")),
                0.0 if metric.kind == "memory" else config.session_noise,
                all(rule.pooled_ok([rd.repeat for rd in group[side]]) for side in ("baseline", "current")),
                bootstrap,
            )
    return comparisons


def paired_rounds(
    baseline: list[RepeatReading], current: list[RepeatReading], min_repeats: int
) -> list[tuple[RepeatReading, RepeatReading]] | None:
    """The (baseline, current) repeats of the same rounds, when both sides were measured interleaved in one
    sweep (every repeat carries a `pair` of the same session) and at least `min_repeats` rounds have both;
    None otherwise (independent samples). A round with one side missing (failed, or left out as invalid)
    is dropped whole, so the pairs stay pairs."""
    pairs_b = {rd.pair: rd for rd in baseline}
    pairs_c = {rd.pair: rd for rd in current}
    if None in pairs_b or None in pairs_c or len(pairs_b) != len(baseline) or len(pairs_c) != len(current):
        return None
    sessions = {p.split(":", 1)[0] for p in (*pairs_b, *pairs_c)}
    shared = [p for p in pairs_b if p in pairs_c]
    if len(sessions) != 1 or len(shared) < min_repeats:
        return None
    return [(pairs_b[p], pairs_c[p]) for p in shared]


def usable_repeats(point: Point, config: GateConfig) -> list[Record]:
    """The ok repeats the statistics use: by default those the worker did not mark `valid: false`."""
    if config.invalid_repeats == "include":
        return point.ok
    return [r for r in point.ok if r.valid is not False]


def _serving_zero(
    key: PointKey, metric: GateMetric, every: dict[str, list[RepeatReading]], config: GateConfig, notes: list[str]
) -> MetricComparison | None:
    """Goodput and max sustainable rate are 0 when no request (no level) met the SLO: a measured value, not a
    missing one, but one no log ratio can take. Where a side has a 0, with `min_repeats` on both sides: every
    current repeat at 0 against none in the baseline is a regression, the reverse an improvement, 0 everywhere
    unchanged; anything else (fewer repeats, 0 in only some) inconclusive, with the reason."""
    values = {
        side: [rd.repeat.values[metric.name] for rd in rds if metric.name in rd.repeat.values]
        for side, rds in every.items()
    }
    both = values["baseline"] + values["current"]
    if not (values["baseline"] and values["current"]) or 0 not in both:
        return None
    base, cur = (float(np.mean(values[side])) for side in ("baseline", "current"))
    comp = MetricComparison(
        key,
        metric,
        config.threshold_for(key.scenario, metric),
        (len(values["baseline"]), len(values["current"])),
        baseline_value=base,
        current_value=cur,
        notes=list(notes),
        family=metric.kind,
    )
    zeros = {side: sum(v == 0 for v in vals) for side, vals in values.items()}
    n = min(len(values["baseline"]), len(values["current"]))
    if n < config.min_repeats:
        comp.reason = (
            f"0 {metric.unit} on a side (no request met every SLO) with {n} repeat(s): its run-to-run variance "
            f"is unknown; a verdict needs ≥ {config.min_repeats} per side"
        )
    elif zeros["current"] == len(values["current"]) and not zeros["baseline"]:
        comp.verdict, comp.reason = "regression", f"fell to 0 {metric.unit} in every repeat: no request met every SLO"
    elif zeros["baseline"] == len(values["baseline"]) and not zeros["current"]:
        comp.verdict, comp.reason = "improvement", f"rose from 0 {metric.unit}: the baseline met no SLO"
    elif zeros["baseline"] + zeros["current"] == len(both):
        comp.verdict, comp.reason = "unchanged", "0 on both sides: no request met every SLO"
    else:
        comp.reason = f"0 {metric.unit} in some repeats (no request met every SLO): no interval for a log ratio"
    return comp


def _insufficient(
    metric: GateMetric,
    have: dict[str, list[RepeatReading]],
    readings: dict[str, list[RepeatReading]],
    left_out: dict[str, int],
    config: GateConfig,
) -> str | None:
    """Why this metric gets no verdict, in words a CI log reader understands; None when it can get one."""
    for side in ("baseline", "current"):
        n = len(readings[side])
        if n < config.min_repeats and left_out[side]:
            return (
                f"too noisy: {side} has {n} valid repeat(s) ({left_out[side]} marked invalid, e.g. latency CV "
                f"above max_cv); a verdict needs ≥ {config.min_repeats} valid repeats per side — rerun on a "
                f"quieter machine or with more repeats"
            )
    for side in ("baseline", "current"):
        stored_only = [rd for rd in readings[side] if _stored_only(rd, metric)]
        if stored_only:
            return (
                f"no statistic: {len(stored_only)} {side} repeat(s) stored only a summary of "
                f"{metric.rule.source or metric.name}, not each call, and the gate's statistic "
                f"{config.statistic} is not in it (statistic: median works from summaries)"
            )
        if not have[side]:
            return f"not measured in {side}"
        if len(have[side]) != len(readings[side]):
            return f"missing in {len(readings[side]) - len(have[side])} of the {side}'s ok repeats"
    for side in ("baseline", "current"):
        n = len(have[side])
        if n < config.min_repeats:
            return (
                f"insufficient repeats: {side} has {n} ok repeat(s), so its run-to-run variance is unknown; "
                f"a verdict needs ≥ {config.min_repeats} per side (bench run --repeats, 3 or more recommended)"
            )
    if metric.kind == "time":
        for side in ("baseline", "current"):
            few = min(rd.sample_counts.get(metric.name, 0) for rd in have[side])
            if few < config.min_samples:
                return (
                    f"insufficient samples: a {side} repeat has {few} measured call(s); a verdict needs "
                    f"≥ {config.min_samples} per repeat (raise measure.min_iterations)"
                )
    return None


def _stored_only(rd: RepeatReading, metric: GateMetric) -> bool:
    """The record has this metric only as a summary that lacks the gate's statistic (no per-call samples)."""
    return metric.name not in rd.repeat.values and bool({metric.name, metric.rule.source} & rd.summary_only)


def _summary_only_note(comp: MetricComparison, have: dict[str, list[RepeatReading]]) -> None:
    source = comp.metric.rule.source
    for side, rds in have.items():
        if comp.metric.kind == "time" and any(comp.metric.name in rd.summary_only for rd in rds):
            comp.notes.append(f"{side}: raw samples not stored, only run-to-run noise resampled")
        elif comp.metric.kind == "rate" and any(source not in rd.repeat.calls for rd in rds):
            comp.notes.append(f"{side}: no raw {source} samples, only run-to-run noise resampled")


def invalid_repeats(b: Point, c: Point) -> list[str]:
    """ "baseline: 1 of 5 repeat(s) marked invalid (reason; …)" per side that has any."""
    found = []
    for side, point in (("baseline", b), ("current", c)):
        invalid = [r for r in point.ok if r.valid is False]
        if invalid:
            reasons = "; ".join(dict.fromkeys(reason for r in invalid for reason in r.invalid_reasons)) or "no reason"
            found.append(f"{side}: {len(invalid)} of {len(point.ok)} repeat(s) marked invalid ({reasons})")
    return found


def _point_notes(b: Point, c: Point, config: GateConfig) -> list[str]:
    counts = [
        f"{side} {sum(r.valid is False for r in p.ok)}/{len(p.ok)}"
        for side, p in (("baseline", b), ("current", c))
        if any(r.valid is False for r in p.ok)
    ]
    if not counts:
        return []
    how = "kept" if config.invalid_repeats == "include" else "left out"
    return [f"⚠ invalid repeats {how}: {', '.join(counts)}"]


def pct(fraction: float) -> str:
    """0.05 → "5%", 0.025 → "2.5%"."""
    return f"{fraction * 100:.3g}%"


def _straddle_reason(comp: MetricComparison) -> str:
    lo, hi = comp.interval
    t = comp.threshold
    edges = [f"+{pct(t)}" if lo <= 1 + t <= hi else None, f"−{pct(t)}" if lo <= 1 - t <= hi else None]
    crossed = " and ".join(e for e in edges if e) or "a threshold"
    if comp.repeats_needed is None:
        more = "the estimate sits on the threshold: more repeats are unlikely to resolve it"
    elif comp.repeats_needed > stats.MAX_REPEATS_SUGGESTED:
        more = f"more than {stats.MAX_REPEATS_SUGGESTED} repeats per side would be needed"
    else:
        more = f"≈{comp.repeats_needed} repeats per side would likely resolve it"
    return f"interval straddles {crossed}; {more}"
