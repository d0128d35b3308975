"""Per-level serving metrics (the record's `serving` section), computed from a served Level.

Per request (measured ones only, warm-up excluded), all from its arrival = when the generator sent it:
queue wait (→ put into a batch), TTFT (→ first token), E2E (→ last token), TPOT ((E2E − TTFT) / (new − 1)),
ITL (each gap). Per level: requested vs achieved rate, the generator's lateness, throughput, mean
concurrency (time integral over the arrival window) against Little's law, SLO checks and attainment,
goodput, saturation. Definitions: docs/serving.md.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from bench.measure.stats import Stats
from bench.serving import slo as slo_mod
from bench.serving.client import ClientStats
from bench.serving.loadgen import Request

LATENESS_FLOOR_S = 0.005  # the generator is behind when its p95 lateness exceeds this or 10% of a mean gap
LITTLE_TOLERANCE = 0.10


class ServingLevel(BaseModel):
    kind: Literal["level", "serial", "summary"]  # a rate level, the one-at-a-time level, or a point's summary
    policy: str
    arrival: str
    level: int  # order of measurement within the point
    requested_rate_per_s: float | None = None  # None for the one-at-a-time (closed-loop) level
    scheduled_rate_per_s: float | None = None  # of this level's measured schedule (a sample of the process)
    achieved_rate_per_s: float | None = None  # as really sent: compare with scheduled_rate_per_s
    requests: int = 0  # measured requests planned
    sent: int = 0
    answered: int = 0
    failed: int = 0
    answered_twice: int = 0
    stopped_early: bool = False
    in_sweep: bool = False  # measured by `rates: sweep` while searching (its SLO breaks are not alerts)
    fail_on_slo: bool = False  # the scenario's serving.fail_on_slo: this level's alerts fail `bench run`
    send_lateness_s: Stats | None = None  # sent − scheduled, per request (open loop only)
    generator_behind: bool = False
    queue_wait_s: Stats | None = None
    ttft_s: Stats | None = None
    tpot_s: Stats | None = None
    itl_s: Stats | None = None
    e2e_s: Stats | None = None
    duration_s: float | None = None  # first measured arrival → last measured token
    request_throughput_per_s: float | None = None
    output_tokens_per_s: float | None = None
    mean_concurrency: float | None = None  # ∫ requests in the system dt / the arrival window
    littles_law_concurrency: float | None = None  # achieved rate × mean E2E
    batch_size_mean: float | None = None
    batch_size_max: int | None = None
    slo: dict[str, float] = {}
    slo_checks: list[slo_mod.SLOCheck] = []
    attainment: slo_mod.Attainment | None = None
    attainment_target: float = 0.95
    meets_slo: bool | None = None  # every percentile check holds and attainment ≥ target
    saturated: bool = False
    saturation_evidence: str = ""
    alerts: list[str] = []
    # summary records: the highest rate that met the SLO, and the levels either side of it
    max_sustainable_rate_per_s: float | None = None
    highest_passing_rate_per_s: float | None = None
    lowest_failing_rate_per_s: float | None = None
    levels: list[dict] = []  # summary: [{rate, meets_slo, attainment, saturated}]
    client: ClientStats | None = None  # backend endpoint: what the HTTP client saw (errors by kind, token counts)


def request_values(r: Request) -> dict[str, float | None]:
    ttft, e2e = r.token_s[0] - r.sent_s, r.token_s[-1] - r.sent_s
    gaps = np.diff(r.token_s)
    return {
        "queue_wait": None if r.started_s is None else r.started_s - r.sent_s,
        "ttft": ttft,
        "e2e": e2e,
        "tpot": (e2e - ttft) / (r.new_tokens - 1) if r.new_tokens > 1 else None,
        "itl": float(gaps.max()) if gaps.size else None,
    }


def _stats(values: list[float | None]) -> Stats | None:
    values = [v for v in values if v is not None]
    return Stats.of(values) if values else None


def saturation(
    ok: list[Request],
    values: list[dict],
    rate: float | None,
    served_rate: float | None,
    stopped_early: bool,
    abort_wait_s: float | None,
) -> tuple[bool, str]:
    """(saturated, evidence): TTFT rising through the level beyond its noise while the server answers
    slower than requests arrive."""
    if stopped_early:
        return True, f"stopped sending: a request waited more than {abort_wait_s:g} s for its first token"
    if len(ok) < 9 or rate is None or not served_rate:
        return False, ""
    order = np.argsort([r.sent_s for r in ok])
    ttft = np.array([values[i]["ttft"] for i in order])
    third = len(ttft) // 3
    first, last = ttft[:third], ttft[-third:]
    q75, q25 = np.percentile(first, [75, 25])
    noise = max(q75 - q25, 0.5 * min(v["e2e"] for v in values))
    rise = float(np.median(last) - np.median(first))
    rising = bool(rise > 2 * noise)
    behind = bool(served_rate < 0.9 * rate)
    evidence = (
        f"median TTFT {np.median(first):.3g} s in the first third of the level, {np.median(last):.3g} s "
        f"in the last (rise {rise:.3g} s, noise {noise:.3g} s); answered {served_rate:.3g} req/s of "
        f"{rate:.3g} req/s offered"
    )
    return rising and behind, evidence if rising or behind else ""


def level_metrics(
    requests: list[Request],
    batches: list[int],
    *,
    kind: str,
    policy: str,
    arrival: str,
    index: int,
    rate: float | None,
    slo: slo_mod.SLOSpec,
    target: float,
    stopped_early: bool,
    abort_wait_s: float | None,
    where: str,
) -> tuple[ServingLevel, list[str], list[str]]:
    """(level, invalid reasons, warnings) for the measured requests of a served level."""
    measured = [r for r in requests if r.measured]
    sent = [r for r in measured if r.sent_s is not None]
    ok = [r for r in sent if r.error is None and r.tokens_out == r.new_tokens and r.token_s and r.answers == 1]
    values = [request_values(r) for r in ok]
    out = ServingLevel(
        kind=kind,
        policy=policy,
        arrival=arrival,
        level=index,
        requested_rate_per_s=rate,
        requests=len(measured),
        sent=len(sent),
        answered=sum(r.answers > 0 for r in sent),
        failed=sum(r.error is not None for r in sent),
        answered_twice=sum(r.answers > 1 for r in sent),
        stopped_early=stopped_early,
        slo=slo.root,
        attainment_target=target,
    )
    invalid, warnings = [], []
    if out.answered_twice or out.answered < len(sent):
        invalid.append(
            f"{len(sent) - out.answered} sent request(s) never answered, {out.answered_twice} answered more than once"
        )
    if out.failed:
        first = next(r.error for r in sent if r.error is not None)
        invalid.append(f"{out.failed} request(s) failed: {first}")
    if len(sent) >= 2:
        span = max(r.sent_s for r in sent) - min(r.sent_s for r in sent)
        out.achieved_rate_per_s = (len(sent) - 1) / span if span > 0 else None
        planned = max(r.scheduled_s for r in sent) - min(r.scheduled_s for r in sent)
        out.scheduled_rate_per_s = (len(sent) - 1) / planned if rate is not None and planned > 0 else None
    if rate is not None and sent:
        late = [r.sent_s - r.scheduled_s for r in sent]
        out.send_lateness_s = Stats.of(late)
        limit = max(LATENESS_FLOOR_S, 0.1 / rate)
        if out.send_lateness_s.p95 > limit:
            out.generator_behind = True
            invalid.append(
                f"load generator fell behind: p95 send lateness {out.send_lateness_s.p95 * 1e3:.1f} ms "
                f"> {limit * 1e3:.1f} ms (10% of the mean gap, at least {LATENESS_FLOOR_S * 1e3:g} ms)"
            )
    if batches:
        out.batch_size_mean, out.batch_size_max = float(np.mean(batches)), int(max(batches))
    if ok:
        for name in ("queue_wait", "ttft", "tpot", "e2e"):
            setattr(out, f"{name}_s", _stats([v[name] for v in values]))
        out.itl_s = _stats([g for r in ok for g in np.diff(r.token_s)])
        start, end = min(r.sent_s for r in sent), max(r.token_s[-1] for r in ok)
        out.duration_s = end - start
        out.request_throughput_per_s = len(ok) / out.duration_s if out.duration_s > 0 else None
        out.output_tokens_per_s = sum(r.new_tokens for r in ok) / out.duration_s if out.duration_s > 0 else None
        window = max(r.sent_s for r in sent) - start
        if window > 0 and out.achieved_rate_per_s:
            inside = sum(max(0.0, min(r.token_s[-1], start + window) - r.sent_s) for r in ok)
            out.mean_concurrency = inside / window
            out.littles_law_concurrency = out.achieved_rate_per_s * out.e2e_s.mean
            ratio = out.mean_concurrency / out.littles_law_concurrency
            if abs(ratio - 1) > LITTLE_TOLERANCE:
                warnings.append(
                    f"Little's law off by {ratio - 1:+.0%}: mean concurrency {out.mean_concurrency:.3g} vs "
                    f"achieved rate × mean E2E {out.littles_law_concurrency:.3g} (the level is not "
                    "stationary: a growing backlog, or too short for its E2E)"
                )
        unresolved = out.e2e_s.unresolved_percentiles()
        if unresolved:
            warnings.append(f"{len(ok)} requests do not resolve {', '.join(unresolved)}")
    if slo.root:
        out.slo_checks = slo_mod.checks(values, slo) if values else []
        out.attainment = slo_mod.attainment(values, len(measured), out.duration_s or 0.0, slo)
        out.alerts = [slo_mod.alert_text(c, where) for c in out.slo_checks if not c.ok]
        out.meets_slo = bool(values) and all(c.ok for c in out.slo_checks) and out.attainment.fraction >= target
    out.saturated, out.saturation_evidence = saturation(
        ok, values, rate, out.request_throughput_per_s, stopped_early, abort_wait_s
    )
    if out.saturated and slo.root:
        out.meets_slo = False
    return out, invalid, warnings
