"""Seeded arrival schedules: offsets in seconds from the level's start, first request at 0.

The draws are made once per seed at rate 1 and divided by the rate, so every level and every matrix point
with the same seed sees the same pattern (common random numbers), only faster or slower.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Arrival = Literal["poisson", "gamma", "constant"]
ARRIVAL_STREAM = 0  # numpy seed-sequence key of the arrival draws (lengths use others)


def unit_gaps(kind: Arrival, n: int, seed: int, burstiness: float = 1.0) -> np.ndarray:
    """n inter-arrival gaps of a process with mean gap 1. Gamma: shape = burstiness (CV = 1/sqrt(shape);
    1 is Poisson, below 1 burstier, above 1 more regular)."""
    rng = np.random.default_rng([seed, ARRIVAL_STREAM])
    if kind == "constant":
        return np.ones(n)
    if kind == "poisson":
        return rng.exponential(1.0, n)
    if kind == "gamma":
        return rng.gamma(burstiness, 1.0 / burstiness, n)
    raise ValueError(f"unknown arrival process {kind!r}")


def schedule(kind: Arrival, rate: float, n: int, seed: int, burstiness: float = 1.0) -> np.ndarray:
    """Send times (s from the level start) of n requests at `rate` requests/s; the first is at 0."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    gaps = unit_gaps(kind, n, seed, burstiness) / rate
    times = np.concatenate([[0.0], np.cumsum(gaps[1:])]) if n else np.zeros(0)
    return times
