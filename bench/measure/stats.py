"""Distributions of timed samples, summarised the same way everywhere (and the raw samples kept)."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}


class Stats(BaseModel):
    count: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single sample
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    samples: list[float] = []

    @classmethod
    def of(cls, samples: list[float] | np.ndarray, keep_samples: bool = True) -> "Stats":
        arr = np.asarray(samples, dtype=float)
        if arr.size == 0:
            raise ValueError("no samples")
        pct = np.percentile(arr, list(PERCENTILES.values()))  # linear interpolation
        return cls(
            count=int(arr.size),
            mean=float(arr.mean()),
            std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            min=float(arr.min()),
            max=float(arr.max()),
            **{k: float(v) for k, v in zip(PERCENTILES, pct)},
            samples=[float(x) for x in arr] if keep_samples else [],
        )

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean)."""
        return self.std / self.mean if self.mean else math.inf

    def unresolved_percentiles(self) -> list[str]:
        """Percentiles the sample count cannot resolve: pXX needs at least one sample beyond it,
        i.e. count >= 100 / (100 - XX) (p90: 10, p95: 20, p99: 100); below that it is the max."""
        return [k for k, q in PERCENTILES.items() if q > 50 and self.count < math.ceil(100 / (100 - q))]

    def __str__(self) -> str:
        return (
            f"p50 {_fmt_s(self.p50)}, p99 {_fmt_s(self.p99)}, mean {_fmt_s(self.mean)} "
            f"± {100 * self.cv:.1f}% over {self.count} samples"
        )


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"
