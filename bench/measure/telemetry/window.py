"""One sampled interval (the idle baseline, or the measured phase) of a telemetry source.

A source (`NvmlSource`, `Rapl`) has `counter_raw()` (raw energy counts, or None when it has no counter),
`moduli`, `joules_per_count`, `reading()` (a dict of instantaneous readings) and `domain`. A window reads
the counter and the readings at its start, at every `sample()` and at its end; its energy is the counter's
sum of steps, else the power readings integrated (trapezoid) over the window, else unavailable with why.
"""

from __future__ import annotations

from typing import Any

from bench.measure.telemetry.counters import CounterEnergy, trapezoid_j


class Window:
    def __init__(self, source: Any, now: float):
        self.source = source
        self.start_s = now
        self.end_s: float | None = None
        self.times: list[float] = []
        self.readings: list[dict[str, Any]] = []
        first = source.counter_raw()
        self.counter = None if first is None else CounterEnergy(first, source.moduli, source.joules_per_count)
        self.counter_lost: str | None = None  # the counter failed after the window began
        self.sample(now, counter=False)

    def sample(self, now: float, counter: bool = True) -> None:
        if counter and self.counter is not None:
            raw = self.source.counter_raw()
            if raw is None:
                self.counter, self.counter_lost = None, self.source.counter_reason
            else:
                self.counter.add(raw)
        self.times.append(now)
        self.readings.append(self.source.reading())

    def close(self, now: float) -> None:
        self.sample(now)
        self.end_s = now

    @property
    def duration_s(self) -> float:
        return (self.end_s if self.end_s is not None else self.times[-1]) - self.start_s

    def values(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.readings]

    def energy(self) -> tuple[str | None, float | None, str | None]:
        """(method, joules, None), or (None, None, the reason there is no figure)."""
        if self.counter is not None:
            return "energy-counter", self.counter.joules, None
        power = self.values("power_w")
        why_no_counter = self.counter_lost or self.source.counter_reason or "no energy counter"
        if len(power) >= 2 and all(p is not None for p in power):
            return "power-integration", trapezoid_j(self.times, power), None
        why_no_power = self.source.unsupported.get("power") or (
            "missing in some samples" if any(p is not None for p in power) else "no power readings"
        )
        return None, None, f"{why_no_counter}; power: {why_no_power}"
