"""Calibrating `session_noise` from runs of the same code (`bench session-noise RUN...`).

Each run is compared with the next by the gate (A/A: nothing changed between them, so every log ratio's true
value is 0), and bench.gate.stats.calibrate_session_noise finds the per-side shift σ that makes those log ratios
as dispersed as the gate's own variances plus 2σ² say they should be. Only unpaired comparisons count (the arms
of one `bench ab` sweep are paired and need no session term), and only time metrics (rates repeat their
source's calls). The runs should be like the ones CI will compare: same scenario, same runner, baselines as old
as CI's will be (the estimate covers what moved between the runs given, nothing slower).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench.errors import BenchInputError
from bench.gate import stats
from bench.gate.compare import GateResult, Side, compare
from bench.gate.config import GateConfig


@dataclass(frozen=True)
class SessionNoise:
    session_noise: float | None  # sd of log shift per side; None: too few unpaired time estimates
    comparisons: int  # A/A comparisons used
    estimates: int  # unpaired time-metric estimates in them
    z_sd: float | None  # sd of log ratio / se of those estimates without a session term (about 1 if calibrated)
    z_sd_calibrated: float | None  # the same with the estimated session term

    @property
    def gate_yaml(self) -> str:
        return f"session_noise: {self.session_noise:.2%}" if self.session_noise is not None else ""


def time_estimates(results: list[GateResult]) -> list[stats.RatioEstimate]:
    """The unpaired estimates of time metrics in these comparisons."""
    return [
        c.estimate
        for r in results
        for c in r.comparisons
        if c.metric.kind == "time" and c.estimate is not None and not c.estimate.paired
    ]


def from_results(results: list[GateResult]) -> SessionNoise:
    """The session noise a set of A/A comparisons calls for (see the module docstring)."""
    found = time_estimates(results)
    sigma = stats.calibrate_session_noise(found)

    def z_sd(session: float) -> float | None:
        z = [
            e.log_ratio / math.sqrt(e.var_baseline + e.var_current + 2 * session**2)
            for e in found
            if e.var_baseline + e.var_current + 2 * session**2 > 0
        ]
        return statistics.stdev(z) if len(z) > 1 else None

    return SessionNoise(
        session_noise=sigma,
        comparisons=len(results),
        estimates=len(found),
        z_sd=z_sd(0.0),
        z_sd_calibrated=z_sd(sigma) if sigma is not None else None,
    )


def calibrate(sides: list[Side], config: GateConfig) -> tuple[SessionNoise, list[GateResult]]:
    """Compare each run with the next (the gate as configured, session_noise set to 0) and calibrate."""
    if len(sides) < 3:
        raise BenchInputError(
            "RUN", f"{len(sides)} run(s) given; calibrating needs at least 3 runs of the same code (2 comparisons)"
        )
    plain = config.model_copy(update={"session_noise": 0.0})
    results = [compare(a, b, plain, allow_env_change=False) for a, b in zip(sides, sides[1:])]
    found = from_results(results)
    if found.session_noise is None:
        raise BenchInputError(
            "RUN",
            "no unpaired time-metric comparison to calibrate from (arms of one `bench ab` sweep are paired and "
            "need no session_noise; runs without common points compare nothing)",
        )
    return found, results
