"""SLOs: `{metric}_{percentile}_s` limits, per-request attainment with a Wilson interval, goodput, alerts.

A request meets the SLO when each of its own values is within every limit (vLLM's goodput rule); the
percentile in a key is the level-wide check that raises an alert ("p95 TTFT 0.31 s > 0.2 s").
Per-request values: queue_wait, ttft, e2e; tpot = (e2e − ttft) / (new_tokens − 1); itl = the request's
largest inter-token gap. A metric a request does not have (tpot, itl with one new token) is not held
against it.
"""

from __future__ import annotations

import math
import re

import numpy as np
from pydantic import BaseModel, PositiveFloat, RootModel, field_validator

from bench.measure.stats import PERCENTILES

SLO_METRICS = ("queue_wait", "ttft", "tpot", "itl", "e2e")
_KEY = re.compile(rf"^({'|'.join(SLO_METRICS)})_({'|'.join(PERCENTILES)})_s$")
LABELS = {"queue_wait": "queue wait", "ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E"}


class SLOSpec(RootModel[dict[str, PositiveFloat]]):
    """e.g. {ttft_p95_s: 0.2, tpot_p95_s: 0.05, e2e_p99_s: 2.0}"""

    root: dict[str, PositiveFloat] = {}

    @field_validator("root")
    @classmethod
    def _known(cls, limits: dict[str, float]) -> dict[str, float]:
        for key in limits:
            if not _KEY.match(key):
                raise ValueError(
                    f"unknown SLO {key!r}: use METRIC_PXX_s with METRIC one of {', '.join(SLO_METRICS)} "
                    f"and PXX one of {', '.join(PERCENTILES)}"
                )
        return limits

    def items(self) -> list[tuple[str, str, str, float]]:
        """(key, metric, percentile, limit_s) per SLO."""
        return [(k, *_KEY.match(k).groups(), v) for k, v in self.root.items()]

    def largest_limit_s(self) -> float | None:
        return max(self.root.values()) if self.root else None


class SLOCheck(BaseModel):
    key: str
    metric: str
    percentile: str
    limit_s: float
    value_s: float | None  # the level's percentile of that metric (None: no request had the metric)
    ok: bool


class Attainment(BaseModel):
    met: int  # measured requests within every SLO
    total: int  # measured requests planned (a request never sent or answered counts as missed)
    fraction: float
    ci_low: float  # Wilson score interval at `confidence`
    ci_high: float
    confidence: float = 0.95
    goodput_per_s: float  # met / the level's duration


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (two-sided; z=1.96 is 95%)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def request_meets(values: dict[str, float | None], slo: SLOSpec) -> bool:
    return all(values.get(metric) is None or values[metric] <= limit for _, metric, _, limit in slo.items())


def attainment(per_request: list[dict[str, float | None]], planned: int, duration_s: float, slo: SLOSpec) -> Attainment:
    met = sum(request_meets(v, slo) for v in per_request)
    low, high = wilson(met, planned)
    return Attainment(
        met=met,
        total=planned,
        fraction=met / planned if planned else 0.0,
        ci_low=low,
        ci_high=high,
        goodput_per_s=met / duration_s if duration_s > 0 else 0.0,
    )


def checks(per_request: list[dict[str, float | None]], slo: SLOSpec) -> list[SLOCheck]:
    out = []
    for key, metric, pct, limit in slo.items():
        values = [v[metric] for v in per_request if v.get(metric) is not None]
        value = float(np.percentile(values, PERCENTILES[pct])) if values else None
        out.append(
            SLOCheck(
                key=key, metric=metric, percentile=pct, limit_s=limit, value_s=value, ok=value is None or value <= limit
            )
        )
    return out


def alert_text(check: SLOCheck, where: str) -> str:
    """One line, e.g. 'p95 TTFT 0.31 s > 0.2 s at 16 req/s, int8 dynamic'."""
    return f"{check.percentile} {LABELS[check.metric]} {check.value_s:.3g} s > {check.limit_s:g} s at {where}"
