"""Energy from counters that wrap, and from power samples integrated over time.

A counter is read at every sample, not only at the ends, so a counter that wraps more than once in a long
phase (RAPL packages wrap every few minutes under load) still sums correctly: each step is taken modulo
the counter's range.
"""

from __future__ import annotations


def wrapped_delta(old: int, new: int, modulus: int) -> int:
    """new − old for a counter that counts up and restarts at 0 after `modulus`."""
    return new - old if new >= old else new + modulus - old


class CounterEnergy:
    """Sums the steps of several counters (RAPL zones, or one GPU) from their first raw values on, in joules."""

    def __init__(self, first: list[int], moduli: list[int], joules_per_count: float):
        self._last = first
        self._moduli = moduli
        self._scale = joules_per_count
        self.counts = 0

    def add(self, raw: list[int]) -> None:
        self.counts += sum(wrapped_delta(a, b, m) for a, b, m in zip(self._last, raw, self._moduli))
        self._last = raw

    @property
    def joules(self) -> float:
        return self.counts * self._scale


def trapezoid_j(times_s: list[float], power_w: list[float]) -> float:
    """∫ P dt over the samples, linear between them."""
    return sum((t1 - t0) * (p0 + p1) / 2 for t0, t1, p0, p1 in zip(times_s, times_s[1:], power_w, power_w[1:]))
