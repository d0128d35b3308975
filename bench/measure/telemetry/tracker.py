"""The telemetry tracker: wraps the measured phase like the memory tracker, samples it in a daemon thread.

    tracker = TelemetryTracker.for_device(device, spec, clock.synchronize)
    with tracker:            # synchronise, [idle baseline], first sample, sampling thread
        ...measured calls...
    telemetry, invalid, warnings = tracker.finish(units)   # units: bench.measure.telemetry.units

The phase's ends are taken after a device synchronise, so the energy covers exactly the work of the
measured calls. CUDA devices are read through NVML, the CPU through RAPL; without either the record says
why energy is unavailable.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np

from bench.measure.telemetry.nvml import THROTTLING
from bench.measure.telemetry.schema import Energy, EnergyPerUnit, Series, Telemetry, TelemetrySpec
from bench.measure.telemetry.units import PER_UNIT_FIELD
from bench.measure.telemetry.window import Window

SERIES = (
    "power_w",
    "sm_clock_mhz",
    "memory_clock_mhz",
    "temperature_c",
    "gpu_utilization_pct",
    "memory_utilization_pct",
)
SHORT_PHASE_S = 2.0  # NVML's power reading is a ~1 s average on recent GPUs, its counter steps coarsely


class _Sampler:
    """Calls window.sample() every interval until stopped."""

    def __init__(self, window: Window, interval_s: float, now: Callable[[], float]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(window, interval_s, now), daemon=True)
        self._thread.start()

    def _loop(self, window: Window, interval_s: float, now: Callable[[], float]) -> None:
        while not self._stop.wait(interval_s):
            window.sample(now())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _series(values: list[Any]) -> Series | None:
    got = [float(v) for v in values if v is not None]
    if not got:
        return None
    return Series(min=min(got), mean=float(np.mean(got)), max=max(got), samples=len(got))


def per_unit(energy_j: float, units: dict[str, int]) -> EnergyPerUnit:
    return EnergyPerUnit(**{PER_UNIT_FIELD[u]: energy_j / n for u, n in units.items() if u in PER_UNIT_FIELD and n > 0})


def energy_of(
    window: Window | None,
    idle: Window | None,
    spec: TelemetrySpec,
    units: dict[str, int],
    unavailable: str | None = None,
    kind: str | None = None,
) -> Energy:
    """The phase's energy, its idle baseline and the energy per unit of work."""
    if window is None:
        return Energy(
            available=False, unavailable_reason=unavailable or "telemetry not sampled", source=kind, units=units
        )
    method, joules, why = window.energy()
    if method is not None and window.duration_s <= 0:
        method, why = None, "the measured phase took no time on the tracker's clock"
    if method is None:
        return Energy(
            available=False,
            unavailable_reason=why,
            source=window.source.source,
            domain=window.source.domain,
            units=units,
        )
    e = Energy(
        available=True,
        source=window.source.source,
        method=method,
        domain=window.source.domain,
        interval_s=window.duration_s,
        energy_j=joules,
        mean_power_w=joules / window.duration_s,
        units=units,
        per_unit=per_unit(joules, units),
    )
    if idle is not None:
        idle_method, idle_j, _ = idle.energy()
        if idle_method is not None and idle.duration_s > 0:
            e.idle_s, e.idle_power_w = idle.duration_s, idle_j / idle.duration_s
            e.energy_above_idle_j = joules - e.idle_power_w * window.duration_s
            if spec.subtract_idle:
                e.basis, e.per_unit_total = "above-idle", e.per_unit
                e.per_unit = per_unit(e.energy_above_idle_j, units)
    return e


def summarize(
    window: Window | None,
    idle: Window | None,
    spec: TelemetrySpec,
    units: dict[str, int],
    device: str,
    unavailable: str | None = None,
    kind: str | None = None,
) -> Telemetry:
    """The record's telemetry section; without a window, energy is unavailable for `unavailable` (the reason)
    and `kind` names the source that was tried."""
    t = Telemetry(
        device=device,
        sample_interval_s=spec.sample_interval_s,
        energy=energy_of(window, idle, spec, units, unavailable, kind),
    )
    if window is None:
        return t
    t.samples = len(window.readings)
    for key in SERIES:
        setattr(t, key, _series(window.values(key)))
    t.unsupported = dict(window.source.unsupported)
    if idle is not None and t.energy.available and t.energy.idle_power_w is None:
        t.unsupported["idle_baseline"] = idle.energy()[2] or "idle window too short"
    t.sm_clock_max_mhz = getattr(window.source, "sm_clock_max_mhz", None)
    reasons = [r for r in window.values("reasons") if r is not None]
    bits = window.source.reason_bits if reasons else {}
    for name, bit in bits.items():
        seen = sum(1 for r in reasons if r & bit)
        if seen:
            t.clock_event_reasons[name] = seen / len(reasons)
    evidence = [
        f"{name} set in {frac:.0%} of {len(reasons)} samples"
        for name, frac in t.clock_event_reasons.items()
        if name in THROTTLING
    ]
    # clocks of the samples where the GPU was busy: an idle GPU drops its clocks, which is no throttling
    idle_bit = bits.get("gpu_idle", 0)
    busy = [
        c
        for c, r in zip(window.values("sm_clock_mhz"), window.values("reasons"))
        if c is not None and not (r is not None and r & idle_bit)
    ]
    if busy and t.sm_clock_max_mhz:
        fraction = float(np.mean(busy)) / t.sm_clock_max_mhz
        if fraction < spec.min_sm_clock_fraction:
            evidence.append(
                f"SM clock mean {np.mean(busy):.0f} MHz (min {min(busy):.0f}) over {len(busy)} busy "
                f"samples is {fraction:.0%} of its maximum {t.sm_clock_max_mhz:.0f} MHz "
                f"(limit {spec.min_sm_clock_fraction:.0%})"
            )
    t.throttle_evidence = evidence
    t.throttled = True if evidence else (False if reasons or (busy and t.sm_clock_max_mhz) else None)
    return t


def verdict(t: Telemetry, spec: TelemetrySpec) -> tuple[list[str], list[str]]:
    """(invalid_reasons, warnings) this telemetry adds to the record."""
    invalid, warnings = [], []
    if t.throttled:
        message = "device throttled during the measured phase: " + "; ".join(t.throttle_evidence)
        (invalid if spec.throttle == "invalid" else warnings).append(message)
    e = t.energy
    if e.source == "nvml" and e.available and e.interval_s < SHORT_PHASE_S:
        how = (
            "NVML's power reading averages over about 1 s on recent GPUs"
            if e.method == "power-integration"
            else "NVML's energy counter updates every 10-100 ms depending on the GPU"
        )
        warnings.append(
            f"energy measured over {e.interval_s:.2f} s only: {how}, so the figure is coarse (raise measure.min_time_s)"
        )
    return invalid, warnings


class TelemetryTracker:
    """`with tracker:` around the measured phase, then `finish(units)`. A disabled or sourceless tracker
    records why energy is unavailable and samples nothing."""

    def __init__(
        self,
        spec: TelemetrySpec,
        source: Any,
        unavailable: str | None,
        device: str,
        synchronize: Callable[[], None] = lambda: None,
        now: Callable[[], float] = time.perf_counter,
        kind: str | None = None,
    ):
        self.spec, self.source, self.unavailable, self.device = spec, source, unavailable, device
        self.kind = kind or getattr(source, "source", None)  # "nvml" | "rapl": what was, or would be, read
        self._sync, self._now = synchronize, now
        self.window: Window | None = None
        self.idle: Window | None = None
        self._sampler: _Sampler | None = None

    @classmethod
    def for_device(cls, device: Any, spec: TelemetrySpec, synchronize: Callable[[], None]) -> "TelemetryTracker":
        label = str(device)
        if not spec.enabled:
            return cls(spec, None, "telemetry disabled (measure.telemetry.enabled: false)", label)
        if getattr(device, "type", "") == "cuda":
            from bench.measure.telemetry.nvml import open_nvml

            source, why = open_nvml(device)
            kind = "nvml"
            if source is not None:
                label = f"{device} {source.domain}"
        else:
            from bench.measure.telemetry.rapl import open_rapl

            source, why = open_rapl()
            kind = "rapl"
        return cls(spec, source, why, label, synchronize, kind=kind)

    def _open_window(self) -> Window:
        return Window(self.source, self._now())

    def __enter__(self) -> "TelemetryTracker":
        if self.source is None:
            return self
        self._sync()
        if self.spec.idle_s > 0:  # the device with nothing of ours running, just before the phase
            self.idle = self._open_window()
            sampler = _Sampler(self.idle, self.spec.sample_interval_s, self._now)
            time.sleep(self.spec.idle_s)
            sampler.stop()
            self.idle.close(self._now())
        self.window = self._open_window()
        self._sampler = _Sampler(self.window, self.spec.sample_interval_s, self._now)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._sampler is None:
            return
        self._sync()
        self._sampler.stop()  # before the last sample: the thread's samples all come earlier
        self.window.close(self._now())
        self.source.close()

    def finish(self, units: dict[str, int]) -> tuple[Telemetry, list[str], list[str]]:
        """(telemetry, invalid_reasons, warnings) of the phase, energy divided by `units` of work."""
        t = summarize(self.window, self.idle, self.spec, units, self.device, self.unavailable, self.kind)
        return (t, *verdict(t, self.spec))
