"""The gate's statistics, independent of records: a hierarchical bootstrap of each side, pooled between-repeat
noise, a Student-t interval for the log ratio current/baseline, Benjamini–Hochberg across families, verdicts.

Model. A side (baseline or current) of one point is R repeats, each a separate process with its own
per-call samples. The side's statistic of a time metric is, by default, a low quantile (p10) of all its
calls pooled over repeats (MetricRule.pooled; GateConfig.combine "pooled"), its throughput is batch × tokens
over it; memory is the mean over repeats of each repeat's peak, and with combine "mean" time metrics are
too (the mean over repeats of each repeat's quantile). Interference from other work only adds time, and a
slow period of the machine can cover a whole repeat: pooled, that repeat's calls land at the slow end,
where a low quantile does not look; averaged, it would move the side by 1/R of its slowdown. Run-to-run
(between-process) noise is usually larger than within-run noise on shared machines, so the uncertainty of
the side statistic must come from the repeats, not from the calls alone.

1. Hierarchical bootstrap, per side: draw R repeats with replacement, and for each drawn repeat a
   resample (with replacement) of its calls; recompute every metric (pooled: over the drawn repeats'
   calls). `B` replicates per side. The calls of one repeat are resampled jointly for all metrics
   (latency, TTFT and TPOT of one call stay together). Each drawn repeat takes a fresh inner resample from a pool of
`inner` precomputed ones.
2. Variance of log(side statistic) from the replicates, corrected for what resampling both levels does
   (Davison & Hinkley 1997, §3.8): it counts the within-run noise twice (once inside every repeat's
   statistic, once more by resampling the calls) and the repeats with the plug-in factor (R−1)/R. The
   corrected value is the unbiased variance of a mean of R repeat statistics, and never less than the
   within-run part alone (SideBootstrap.log_variance). A pooled statistic is no mean of per-repeat values:
   its variance is the replicates' times R/(R−1), which keeps the within-run part twice (errs wide).
3. log ratio l = log(current) − log(baseline), se² = var_b + var_c (+ 2·session_noise², a calibrated
   shift of whole sessions that no number of repeats inside one session reveals; 0 unless configured),
   degrees of freedom by Welch–Satterthwaite with R_b − 1 and R_c − 1: with 3 repeats a side a normal
   quantile would be far too optimistic. Interval: exp(l ± t_{df, 1−γ/2} · se).
4. The unchanged zone is [1 − threshold, 1 + threshold] in ratio terms. Per comparison a two-sided
   p-value for "the ratio lies inside the zone" is p = min(1, 2·min(p_up, p_down)), the one-sided
   p-values of lying above 1+threshold / below 1−threshold. Benjamini–Hochberg at `alpha` over the
   family gives k discoveries; every interval is then reported at level 1 − γ with γ = alpha·max(k,1)/m
   (the false-coverage-rate adjustment of Benjamini & Yekutieli, 2005), so "the whole interval lies
   beyond the threshold" and "BH rejected it" are the same statement.
5. Paired (interleaved) sides: when both were measured in rounds of one `bench ab` sweep (repeat k of each
   ran back to back), the bootstrap draws the same rounds for both sides and takes the variance of the log
   ratio's replicates (PairedBootstrap), with rounds − 1 degrees of freedom and no session term: what slowed
   the machine during a round slowed both sides and cancels in the ratio.
6. Pooled noise (fit_noise_prior, side_variance): unpaired sides of several points replace item 2's variance by
   the sample variance of the repeats' own statistics shrunk towards the side's pooled value (empirical Bayes,
   Smyth 2004), with the degrees of freedom pooling gives. Families (simes): BH runs over points' families.
   Model, assumptions and choices: docs/gate.md, "Few repeats: pooled noise and families".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

Verdict = Literal["regression", "improvement", "unchanged", "inconclusive"]
MAX_REPEATS_SUGGESTED = 50  # beyond this, "more repeats" is not a realistic answer


# --- Student t, without scipy ------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(x: float, df: float) -> float:
    """P(T ≤ x) for Student's t with `df` (> 0, not necessarily integer) degrees of freedom."""
    if math.isinf(df):
        return NormalDist().cdf(x)
    if x == 0:
        return 0.5
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + x * x))
    return 1.0 - tail if x > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on t_cdf; monotone, 1e-10 accurate)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if math.isinf(df):
        return NormalDist().inv_cdf(p)
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# --- pooled between-repeat noise: empirical Bayes (Smyth 2004) ---------------------------------------------


def digamma(x: float) -> float:
    """ψ(x) for x > 0: recurrence up to x ≥ 6, then the asymptotic series (error < 1e-12)."""
    acc = 0.0
    while x < 6.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))


def trigamma(x: float) -> float:
    """ψ'(x) for x > 0, the same way."""
    acc = 0.0
    while x < 6.0:
        acc += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    return acc + 1 / x + f / 2 + f / x * (1 / 6 - f * (1 / 30 - f * (1 / 42 - f / 30)))


def trigamma_inverse(y: float) -> float:
    """x with ψ'(x) = y (y > 0): Newton's method on 1/ψ'(x), started at 0.5 + 1/y (Smyth 2004, limma)."""
    if y > 1e7:
        return 1.0 / math.sqrt(y)
    if y < 1e-6:
        return 1.0 / y
    x = 0.5 + 1.0 / y
    for _ in range(50):
        tri = trigamma(x)
        # d/dx of 1/ψ'(x) is −ψ''(x)/ψ'(x)²; ψ''(x) by a central difference is enough for this step
        h = 1e-5 * x
        tetra = (trigamma(x + h) - trigamma(x - h)) / (2 * h)
        step = tri * (1 - tri / y) / tetra
        x += step
        if -step / x < 1e-8:
            break
    return x


@dataclass(frozen=True)
class NoisePrior:
    """The pooled between-repeat variance of one side: `variance` (per repeat, log scale) worth `df` degrees of
    freedom, from `entries` estimates of `points` points."""

    variance: float
    df: float
    entries: int
    points: int

    def shrink(self, variance: float, df: float) -> tuple[float, float]:
        """The posterior (variance, degrees of freedom) of one estimate with `df` of its own:
        (d0·s0² + d·s²) / (d0 + d), d0 + d."""
        if self.df <= 0:
            return variance, df
        return (self.df * self.variance + df * variance) / (self.df + df), self.df + df


def fit_noise_prior(variances: list[float], dfs: list[float], max_total_df: float, points: int) -> NoisePrior | None:
    """Empirical-Bayes prior of per-repeat variances that share one machine and one period (Smyth 2004, §6.2,
    limma's fitFDist, by moments of log s²): each s_i² is taken as s0²·χ²_{d_i}/d_i around a variance drawn
    from s0²·d0/χ²_{d0}. E[log s_i²] − ψ(d_i/2) + log(d_i/2) estimates log s0² − ψ(d0/2) + log(d0/2), and the
    spread of those terms beyond what ψ'(d_i/2) explains is ψ'(d0/2). No spread left: d0 = ∞, every estimate
    takes the pooled value. d0 + d_i is capped at `max_total_df` (the degrees of freedom of the points pooled:
    metrics of one point are one measurement, not several). None with fewer than 2 estimates."""
    pairs = [(v, d) for v, d in zip(variances, dfs) if v > 0 and math.isfinite(v) and d > 0]
    if len(pairs) < 2 or points < 2:
        return None
    e = [math.log(v) - digamma(d / 2) + math.log(d / 2) for v, d in pairs]
    mean = sum(e) / len(e)
    spread = sum((x - mean) ** 2 for x in e) / (len(e) - 1) - sum(trigamma(d / 2) for _, d in pairs) / len(pairs)
    cap = max(0.0, max_total_df - max(d for _, d in pairs))
    if spread > 0:
        d0 = 2 * trigamma_inverse(spread)
        s0 = math.exp(mean + digamma(d0 / 2) - math.log(d0 / 2))
    else:
        d0, s0 = math.inf, math.exp(mean)
    return NoisePrior(variance=s0, df=min(d0, cap), entries=len(pairs), points=points)


# --- one side: hierarchical bootstrap ----------------------------------------------------------------------


@dataclass
class Repeat:
    """One repeat (one process) of one point, as the bootstrap sees it.

    `calls`: per-call sample arrays that belong together (same length: latency, TTFT, TPOT of each call).
    `values`: the repeat's own value of every metric, each computed from the calls or recorded.
    """

    calls: dict[str, np.ndarray]
    values: dict[str, float]


@dataclass(frozen=True)
class MetricRule:
    """How one metric is recomputed from a resample of one repeat's calls.

    statistic "quantile": the `quantile` of the per-call samples named `source` (0.5: the median call; the
      gate's default 0.1: the p10 call, which interference from other processes moves least).
    statistic "rate": a throughput at that same statistic of its source. The repeat's value is batch × tokens
      / quantile(source) (the record's own value is over the mean: bench.gate.metrics.read_repeat converts
      it); a resample's is that value × quantile(source) / quantile(resampled source).
    statistic "value": the recorded value; no within-run resampling (memory peaks, one per process).
    A rule whose source samples are missing in a repeat falls back to "value" for that repeat (the reader of
    the records has put the value at the right statistic there, from the stored summary).
    """

    name: str
    statistic: Literal["quantile", "rate", "value"]
    source: str | None = None
    quantile: float = 0.5
    pooled: bool = False  # the side's statistic is the quantile of all its repeats' calls together (see pooled_ok)

    def pooled_ok(self, repeats: list[Repeat]) -> bool:
        """Pooled when asked for and every repeat kept its calls of the source (else: mean over repeats)."""
        return (
            self.pooled
            and self.statistic != "value"
            and bool(repeats)
            and all(len(r.calls.get(self.source, ())) for r in repeats)
        )


def call_statistic(samples: np.ndarray, quantile: float, axis: int | None = None) -> np.ndarray | float:
    """The per-repeat statistic of per-call samples (linear interpolation, as the records' percentiles)."""
    return np.quantile(samples, quantile, axis=axis)


def side_estimate(repeats: list[Repeat], rule: MetricRule) -> float:
    """The side's statistic: the quantile of all calls of all repeats together (pooled rules), else the mean
    over repeats of each repeat's value."""
    if rule.pooled_ok(repeats):
        q = float(call_statistic(np.concatenate([r.calls[rule.source] for r in repeats]), rule.quantile))
        return _rate_work(repeats, rule) / q if rule.statistic == "rate" else q
    return float(np.mean([r.values[rule.name] for r in repeats]))


def _rate_work(repeats: list[Repeat], rule: MetricRule) -> float:
    """batch × tokens of a rate: each repeat's value × its own statistic of the source (the same in every repeat)."""
    return float(np.mean([r.values[rule.name] * call_statistic(r.calls[rule.source], rule.quantile) for r in repeats]))


def pooled_replicates(
    repeats: list[Repeat],
    rules: list[MetricRule],
    outer: np.ndarray,
    rng: np.random.Generator,
    chunk_values: int = 2_000_000,
) -> dict[str, np.ndarray]:
    """Per pooled rule, one replicate per row of `outer` (indices of the drawn repeats): every drawn repeat's
    calls resampled with replacement (one uniform draw per call slot, so latency, TTFT and TPOT of one call
    stay together when they have the same count), all drawn repeats pooled, the rule's quantile taken."""
    sources = sorted({r.source for r in rules})
    counts = {s: np.array([len(rep.calls[s]) for rep in repeats]) for s in sources}
    width = max(int(c.max()) for c in counts.values())
    padded = {s: np.full((len(repeats), width), np.inf) for s in sources}
    for s in sources:
        for k, rep in enumerate(repeats):
            padded[s][k, : counts[s][k]] = rep.calls[s]
    n_rep_drawn = outer.shape[1]
    step = max(1, chunk_values // (n_rep_drawn * width))
    quantiles: dict[tuple[str, float], np.ndarray] = {}
    wanted = {(r.source, r.quantile) for r in rules}
    out = {key: np.empty(len(outer)) for key in wanted}
    for start in range(0, len(outer), step):
        rows = outer[start : start + step]  # (b, R)
        u = rng.random((len(rows), n_rep_drawn, width))
        for s in sources:
            n = counts[s][rows]  # (b, R)
            idx = np.minimum((u * n[..., None]).astype(int), width - 1)
            vals = np.take_along_axis(padded[s][rows], idx, axis=2)  # (b, R, width)
            vals = np.where(np.arange(width) < n[..., None], vals, np.inf).reshape(len(rows), -1)
            vals.sort(axis=1)
            total = n.sum(axis=1)
            for source, q in wanted:
                if source != s:
                    continue
                pos = q * (total - 1)
                lo = np.floor(pos).astype(int)
                hi = np.minimum(lo + 1, total - 1)
                frac = pos - lo
                r = np.arange(len(rows))
                out[(s, q)][start : start + len(rows)] = vals[r, lo] + frac * (vals[r, hi] - vals[r, lo])
    for rule in rules:
        quantiles[rule.name] = out[(rule.source, rule.quantile)]
        if rule.statistic == "rate":
            quantiles[rule.name] = _rate_work(repeats, rule) / quantiles[rule.name]
    return quantiles


@dataclass
class SideBootstrap:
    """One side's hierarchical bootstrap of one metric."""

    replicates: np.ndarray  # of the side statistic (mean over drawn repeats of each one's resampled statistic)
    within_var: float  # mean over repeats of var(log repeat statistic) when only its calls are resampled
    repeats: int
    # Pooled statistics are not means of per-repeat values: their variance is the replicates' robust spread
    # (replicate_variance) times R/(R−1); the within-run noise, counted once by the pooled quantile and once
    # more by resampling the calls, stays in (errs wide).
    pooled: bool = False

    def log_variance(self) -> float:
        """Variance of log(side statistic).

        The replicates' variance is V = (R−1)/R · S²/R + w/R, with S² the variance of the per-repeat
        statistics (each already carrying its own within-run noise) and w the within-run part: resampling
        both levels counts the within-run noise twice and the repeats with the plug-in (R−1)/R. So the
        unbiased S²/R is (V − w/R) · R/(R−1); it is never taken below w/R, the part no repeat can avoid
        (guards against a few repeats that agree by chance)."""
        n = self.repeats
        total = replicate_variance(np.log(self.replicates), robust=self.pooled)
        within = self.within_var / n
        return max((total - within) * n / (n - 1), within)


ROBUST_SPREAD = True  # pooled statistics: the replicates' spread from their central 68%, not their variance


def replicate_variance(x: np.ndarray, robust: bool) -> float:
    """Variance of bootstrap replicates. `robust`: the square of half their central 68.27% range (a normal's
    sd for a normal bulk). A pooled low quantile jumps when a resample draws a repeat that a slow period
    covered 4 or 5 times out of 5 (0.7% of resamples for one such repeat in 5): those few replicates would
    dominate the variance and hide a change the other 99% of resamples agree on."""
    if not (robust and ROBUST_SPREAD):
        return float(np.var(x, ddof=1))
    lo, hi = np.quantile(x, [0.158655, 0.841345])
    return float(((hi - lo) / 2) ** 2)


def _pools(
    repeats: list[Repeat], rules: list[MetricRule], inner: int, rng: np.random.Generator, max_draws: int
) -> dict[str, np.ndarray]:
    """Per rule, an (R, inner) array: `inner` resampled statistics of each repeat's own calls."""
    pools = {rule.name: np.empty((len(repeats), inner)) for rule in rules}
    for k, rep in enumerate(repeats):
        lengths = {len(v) for v in rep.calls.values()}
        draws: dict[int, np.ndarray] = {}
        for n in lengths:  # one index matrix per call count: calls stay together across metrics
            rows = max(1, min(inner, max_draws // max(n, 1)))
            draws[n] = rng.integers(0, n, size=(rows, n)) if n else np.empty((rows, 0), dtype=int)
        for rule in rules:
            pools[rule.name][k] = _inner_pool(rep, rule, draws, inner, rng)
    return pools


def _within_var(pool: np.ndarray) -> float:
    return float(np.mean(np.var(np.log(pool), axis=1, ddof=1)))


def bootstrap_side(
    repeats: list[Repeat],
    rules: list[MetricRule],
    resamples: int,
    rng: np.random.Generator,
    inner: int = 1000,
    max_draws: int = 4_000_000,
    outer: np.ndarray | None = None,
) -> dict[str, SideBootstrap]:
    """Hierarchical bootstrap of every rule's side statistic: `resamples` replicates each (rows of `outer`,
    the drawn repeats, when given: a paired bootstrap draws the same rounds on both sides)."""
    n_rep = len(repeats)
    if outer is None:
        outer = rng.integers(0, n_rep, size=(resamples, n_rep))
    pooled = [rule for rule in rules if rule.pooled_ok(repeats)]
    means = [rule for rule in rules if rule not in pooled]
    result: dict[str, SideBootstrap] = {}
    if pooled:
        for name, reps in pooled_replicates(repeats, pooled, outer, rng).items():
            result[name] = SideBootstrap(replicates=reps, within_var=0.0, repeats=n_rep, pooled=True)
    if means:
        pools = _pools(repeats, means, inner, rng, max_draws)
        pick = rng.integers(0, inner, size=outer.shape)
        for name, pool in pools.items():
            result[name] = SideBootstrap(
                replicates=pool[outer, pick].mean(axis=1), within_var=_within_var(pool), repeats=n_rep
            )
    return result


@dataclass
class PairedBootstrap:
    """Both sides of one metric, measured in rounds (bench ab): replicates of log(current / baseline) that
    draw the same rounds on both sides, so what a round's slow period did to both cancels."""

    log_ratios: np.ndarray
    within_var: float  # within-run part: mean var(log statistic) of one repeat, both sides summed
    rounds: int
    pooled: bool = False  # robust spread, as SideBootstrap

    def log_variance(self) -> float:
        """As SideBootstrap.log_variance, over rounds: the unbiased variance of the mean of the rounds'
        linearised log ratios, never below the within-run part."""
        n = self.rounds
        total = replicate_variance(self.log_ratios, robust=self.pooled)
        within = self.within_var / n
        return max((total - within) * n / (n - 1), within)


def bootstrap_pairs(
    baseline: list[Repeat],
    current: list[Repeat],
    rules: list[MetricRule],
    resamples: int,
    rng: np.random.Generator,
    inner: int = 1000,
    max_draws: int = 4_000_000,
) -> dict[str, PairedBootstrap]:
    """Paired hierarchical bootstrap: baseline[k] and current[k] ran in the same round k. Rounds are drawn
    with replacement (the same draw for both sides), each drawn repeat's calls resampled on its own."""
    n = len(baseline)
    if n != len(current):
        raise ValueError(f"paired sides need the same number of rounds, got {n} and {len(current)}")
    outer = rng.integers(0, n, size=(resamples, n))
    sides = [bootstrap_side(reps, rules, resamples, rng, inner, max_draws, outer=outer) for reps in (baseline, current)]
    return {
        rule.name: PairedBootstrap(
            log_ratios=np.log(sides[1][rule.name].replicates) - np.log(sides[0][rule.name].replicates),
            within_var=sides[0][rule.name].within_var + sides[1][rule.name].within_var,
            rounds=n,
            pooled=sides[0][rule.name].pooled and sides[1][rule.name].pooled,
        )
        for rule in rules
    }


def _inner_pool(
    rep: Repeat, rule: MetricRule, draws: dict[int, np.ndarray], inner: int, rng: np.random.Generator
) -> np.ndarray:
    value = rep.values[rule.name]
    samples = rep.calls.get(rule.source) if rule.source else None
    if rule.statistic == "value" or samples is None or len(samples) == 0:
        return np.full(inner, value)
    idx = draws[len(samples)]
    resampled = samples[idx]  # (rows, n)
    stats = call_statistic(resampled, rule.quantile, axis=1)
    if rule.statistic == "rate":
        stats = value * call_statistic(samples, rule.quantile) / stats
    if len(stats) < inner:  # a large repeat got fewer distinct inner resamples: draw among them
        stats = stats[rng.integers(0, len(stats), size=inner)]
    return stats


# --- two sides: interval, p-value, verdict ---------------------------------------------------------------


@dataclass
class RatioEstimate:
    """log(current / baseline) with its standard error and degrees of freedom."""

    log_ratio: float
    se: float
    df: float
    var_baseline: float  # of log(baseline statistic)
    var_current: float
    repeats_baseline: int
    repeats_current: int
    session_var: float = 0.0  # 2 · session_noise², part of se² that more repeats do not reduce
    paired: bool = False  # rounds of bench ab: df = rounds − 1, no session term (both sides shared it)
    prior_df: tuple[float, float] = (0.0, 0.0)  # degrees of freedom the pooled noise added to each side

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def interval(self, gamma: float) -> tuple[float, float]:
        """The (1 − gamma) two-sided interval of the ratio."""
        if self.se == 0:
            return self.ratio, self.ratio
        q = t_ppf(1 - gamma / 2, self.df)
        return math.exp(self.log_ratio - q * self.se), math.exp(self.log_ratio + q * self.se)

    def p_value(self, threshold: float) -> float:
        """Two-sided p-value of "the ratio lies in [1 − threshold, 1 + threshold]"."""
        up, down = math.log1p(threshold), math.log1p(-threshold)
        if self.se == 0:
            return 0.0 if (self.log_ratio > up or self.log_ratio < down) else 1.0
        p_up = 1 - t_cdf((self.log_ratio - up) / self.se, self.df)  # small when clearly above 1 + threshold
        p_down = t_cdf((self.log_ratio - down) / self.se, self.df)  # small when clearly below 1 − threshold
        return min(1.0, 2 * min(p_up, p_down))

    def repeats_needed(self, threshold: float, gamma: float, limit: int = MAX_REPEATS_SUGGESTED) -> int | None:
        """Repeats per side that would likely make the interval clear the nearest threshold, assuming the
        point estimate and the per-repeat variance stay as they are: se(n)² = (var_b·R_b + var_c·R_c) / n
        (+ the session variance, which repeats do not reduce), df(n) = 2n − 2 (∞ with session noise alone),
        plus what the pooled noise added to each side.
        `limit + 1` when even `limit` would not; None when the estimate sits on a threshold."""
        up, down = math.log1p(threshold), math.log1p(-threshold)
        lr = self.log_ratio
        margin = min(up - lr, lr - down) if down <= lr <= up else (lr - up if lr > up else down - lr)
        per_repeat = self.var_baseline * self.repeats_baseline + self.var_current * self.repeats_current
        if margin <= 1e-9 or per_repeat <= 0:  # on the threshold (to rounding): no n resolves it
            return None
        start = max(self.repeats_baseline, self.repeats_current) + 1
        for n in range(start, limit + 1):
            var_n = per_repeat / n
            df_n = (
                n - 1
                if self.paired
                else welch_df(
                    var_n / 2, n - 1 + self.prior_df[0], var_n / 2, n - 1 + self.prior_df[1], known=self.session_var
                )
            )
            if t_ppf(1 - gamma / 2, df_n) * math.sqrt(var_n + self.session_var) < margin:
                return n
        return limit + 1


def repeat_variance(values: list[float]) -> float:
    """The sample variance (ddof 1) of log per-repeat statistics: s²·χ²(R−1)/(R−1) distributed for normal
    noise, the quantity the empirical-Bayes fit needs (a bootstrap spread of 3 repeats is far more variable)."""
    return float(np.var(np.log(values), ddof=1))


def side_variance(
    side: SideBootstrap, prior: NoisePrior | None = None, values: list[float] | None = None, design: float = 1.0
) -> tuple[float, float]:
    """(variance of log(side statistic), its degrees of freedom): the side's own bootstrap variance, R − 1 df;
    with a `prior` and the repeats' own `values`, their sample variance shrunk towards the pooled one, over R,
    times `design` (how much more variable the side's statistic is than a mean of its repeats' values: a pooled
    quantile leans on the fastest repeats), with the degrees of freedom pooling gives (never below the within-run
    part the bootstrap found)."""
    n = side.repeats
    if prior is None or values is None or len(values) < 2:
        return side.log_variance(), float(n - 1)
    per_repeat, df = prior.shrink(repeat_variance(values), n - 1)
    return max(design * per_repeat / n, side.within_var / n), df


def design_effect(sides: list[SideBootstrap], values: list[list[float]]) -> float:
    """Variance of a side's statistic relative to the mean of its repeats' values, over all of a side's time
    metrics together: Σ bootstrap variance / Σ s²/R, never below 1 (a pooled p10 of R repeats behaves like a low
    order statistic of them: 1.2–1.5× the mean's variance for 3–5 repeats with between-repeat noise like the
    calls')."""
    num = sum(side.log_variance() for side in sides)
    den = sum(repeat_variance(v) / len(v) for v in values if len(v) >= 2)
    return max(1.0, num / den) if den > 0 else 1.0


def ratio_estimate(
    baseline_est: float,
    baseline: SideBootstrap,
    current_est: float,
    current: SideBootstrap,
    session_noise: float = 0.0,
    priors: tuple[NoisePrior | None, NoisePrior | None] = (None, None),
    values: tuple[list[float] | None, list[float] | None] = (None, None),
    design: tuple[float, float] = (1.0, 1.0),
) -> RatioEstimate:
    """`session_noise`: the standard deviation (log scale) of a whole session's shift that its repeats cannot
    show (machine load, clocks, thermal state of one `bench run`), known from calibration, not from the data:
    each side gets session_noise² more variance, with infinite degrees of freedom. `priors`: each side's pooled
    between-repeat noise (fit_noise_prior), or None for the side's own variance alone; `values`: each side's
    per-repeat statistics, whose sample variance the prior shrinks; `design`: each side's design_effect."""
    (var_b, df_b) = side_variance(baseline, priors[0], values[0], design[0])
    (var_c, df_c) = side_variance(current, priors[1], values[1], design[1])
    n_baseline, n_current = baseline.repeats, current.repeats
    session = 2 * session_noise**2
    return RatioEstimate(
        log_ratio=math.log(current_est) - math.log(baseline_est),
        se=math.sqrt(var_b + var_c + session),
        df=welch_df(var_b, df_b, var_c, df_c, known=session),
        var_baseline=var_b,
        var_current=var_c,
        repeats_baseline=n_baseline,
        repeats_current=n_current,
        session_var=session,
        prior_df=(df_b - (n_baseline - 1), df_c - (n_current - 1)),
    )


def paired_ratio_estimate(baseline_est: float, current_est: float, pairs: PairedBootstrap) -> RatioEstimate:
    """The log ratio of the sides' statistics with the variance of the paired bootstrap: Student t with
    rounds − 1 degrees of freedom. No session term: the rounds of both sides ran in the same session."""
    var = pairs.log_variance()
    n = pairs.rounds
    return RatioEstimate(
        log_ratio=math.log(current_est) - math.log(baseline_est),
        se=math.sqrt(var),
        df=n - 1,
        var_baseline=var / 2,
        var_current=var / 2,
        repeats_baseline=n,
        repeats_current=n,
        paired=True,
    )


def welch_df(var_a: float, df_a: float, var_b: float, df_b: float, known: float = 0.0) -> float:
    """Welch–Satterthwaite degrees of freedom of var_a + var_b (+ a `known` variance, infinite df)."""
    denom = (var_a * var_a / df_a if var_a else 0.0) + (var_b * var_b / df_b if var_b else 0.0)
    if denom == 0:
        return math.inf if known else float(df_a + df_b)
    return (var_a + var_b + known) ** 2 / denom


def verdict(interval: tuple[float, float], threshold: float, higher_is_better: bool) -> Verdict:
    """regression / improvement when the whole interval lies beyond the threshold on the bad / good side,
    unchanged when it lies inside [1 − threshold, 1 + threshold], inconclusive when it straddles."""
    lo, hi = interval
    up, down = 1 + threshold, 1 - threshold
    if lo > up:
        return "improvement" if higher_is_better else "regression"
    if hi < down:
        return "regression" if higher_is_better else "improvement"
    if lo >= down and hi <= up:
        return "unchanged"
    return "inconclusive"


def benjamini_hochberg(p_values: list[float], alpha: float) -> int:
    """Number of discoveries k of the BH step-up procedure at false discovery rate `alpha`."""
    m = len(p_values)
    k = 0
    for i, p in enumerate(sorted(p_values), start=1):
        if p <= i * alpha / m:
            k = i
    return k


def simes(p_values: list[float]) -> float:
    """Simes' p-value of a family (the intersection of its hypotheses): min over i of m·p_(i)/i. Valid when
    the members are positively dependent (Sarkar 1998), as metrics computed from the same calls are; equal
    p-values (a rate and the time it is computed from) count once."""
    m = len(p_values)
    return min(1.0, min(m * p / i for i, p in enumerate(sorted(p_values), start=1)))


def family_level(p_values: list[float], alpha: float) -> tuple[float, int]:
    """(gamma, k): intervals are reported at 1 − gamma, gamma = alpha · max(k, 1) / m."""
    m = len(p_values)
    if m == 0:
        return alpha, 0
    k = benjamini_hochberg(p_values, alpha)
    return alpha * max(k, 1) / m, k


# --- calibrating session_noise from A/A comparisons ---------------------------------------------------------


def calibrate_session_noise(estimates: list[RatioEstimate]) -> float | None:
    """The `session_noise` that makes the gate's own A/A comparisons as dispersed as it says they are: a moment
    estimator of between-session heterogeneity (Paule & Mandel 1982, as random-effects meta-analysis uses it).

    Each unpaired A/A estimate has log ratio l_i (true value 0) and the gate's variance v_i = var_b + var_c
    (without any session term). With a shift of sd σ per session, l_i ~ t_{df_i(σ)} · sqrt(v_i + 2σ²), so
    E[l_i² / (v_i + 2σ²)] = df_i / (df_i − 2). σ solves Σ l_i² / (v_i + 2σ²) = Σ df_i(σ) / (df_i(σ) − 2),
    df_i(σ) the Welch–Satterthwaite degrees of freedom the gate gives with that session term; 0 when the
    comparisons are not over-dispersed at σ = 0. Estimates with df ≤ 2 (no finite variance), paired ones (no
    session term) and ones with no variance are left out; None with fewer than 2 left."""
    rows = []
    for e in estimates:
        v = e.var_baseline + e.var_current
        df_b = e.repeats_baseline - 1 + e.prior_df[0]
        df_c = e.repeats_current - 1 + e.prior_df[1]
        if e.paired or v <= 0 or welch_df(e.var_baseline, df_b, e.var_current, df_c) <= 2:
            continue
        rows.append((e.log_ratio * e.log_ratio, e.var_baseline, df_b, e.var_current, df_c))
    if len(rows) < 2:
        return None

    def excess(s2: float) -> float:
        total = 0.0
        for l2, vb, db, vc, dc in rows:
            df = welch_df(vb, db, vc, dc, known=2 * s2)
            total += l2 / (vb + vc + 2 * s2) - (1.0 if math.isinf(df) else df / (df - 2))
        return total

    if excess(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, max(l2 for l2, *_ in rows)  # at σ² = max l², every term l²/(v + 2σ²) < 1/2: excess < 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return math.sqrt(0.5 * (lo + hi))
