"""The telemetry section of a record (`Record.telemetry`) and its scenario options (`measure.telemetry`).

Energy is either measured (`available: true`, with the source and method that measured it) or unavailable
with the reason; it is never 0 for "not measured". Units live in field names (_j, _w, _s, _mhz, _c, _pct).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator


class TelemetrySpec(BaseModel):
    """`measure.telemetry` in a scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    sample_interval_s: PositiveFloat = Field(0.05, le=10.0, description="time between two samples of the device")
    throttle: Literal["warn", "invalid"] = Field(
        "warn",
        description="a phase the device throttled (or ran well below its SM clock maximum) in: a warning "
        "with the evidence, or an invalid record",
    )
    min_sm_clock_fraction: float = Field(
        0.8, gt=0, le=1, description="SM clock (busy samples) below this fraction of its maximum counts as throttled"
    )
    idle_s: NonNegativeFloat = Field(
        0.0, le=60.0, description="seconds of idle power measured before the phase (0: none)"
    )
    subtract_idle: bool = Field(False, description="per-unit energy above the idle baseline (both figures kept)")

    @model_validator(mode="after")
    def _idle_needs_baseline(self) -> "TelemetrySpec":
        if self.subtract_idle and self.idle_s == 0:
            raise ValueError("subtract_idle needs an idle baseline: set idle_s > 0")
        return self


class Series(BaseModel):
    """A time series sampled during the measured phase, summarised."""

    min: float
    mean: float
    max: float
    samples: int


class EnergyPerUnit(BaseModel):
    """Joules per unit of work done in the measured phase (units: `bench.measure.telemetry.units`)."""

    output_token_j: float | None = None
    sequence_j: float | None = None
    image_j: float | None = None
    request_j: float | None = None


class Energy(BaseModel):
    available: bool
    unavailable_reason: str | None = None  # why there is no figure (never a 0 J figure instead)
    source: Literal["nvml", "rapl"] | None = None
    method: Literal["energy-counter", "power-integration"] | None = None
    domain: str | None = None  # what the figure covers: "gpu 0 (NVIDIA H100)", "rapl package-0 + package-1"
    interval_s: float | None = None  # the span the figure covers (the measured phase, synchronised)
    energy_j: float | None = None
    mean_power_w: float | None = None  # energy_j / interval_s
    idle_s: float | None = None  # the baseline's span, when one was measured before the phase
    idle_power_w: float | None = None
    energy_above_idle_j: float | None = None  # energy_j − idle_power_w × interval_s
    basis: Literal["total", "above-idle"] = "total"  # what `per_unit` divides
    units: dict[str, int] = {}  # work done in the phase: {"output_tokens": n, "sequences": n, ...}
    per_unit: EnergyPerUnit | None = None
    per_unit_total: EnergyPerUnit | None = None  # on the total, kept when `per_unit` is above idle


class Telemetry(BaseModel):
    """What the device reported during the measured phase of one run."""

    device: str  # "cuda:0 NVIDIA H100 80GB HBM3", "cpu"
    sample_interval_s: float
    samples: int = 0
    energy: Energy
    power_w: Series | None = None
    sm_clock_mhz: Series | None = None
    sm_clock_max_mhz: float | None = None  # the device's own maximum (nvmlDeviceGetMaxClockInfo)
    memory_clock_mhz: Series | None = None
    temperature_c: Series | None = None
    gpu_utilization_pct: Series | None = None
    memory_utilization_pct: Series | None = None
    # clock-event (throttle) reasons seen, each with the fraction of samples in which it was set
    clock_event_reasons: dict[str, float] = {}
    throttled: bool | None = None  # None: could not tell (no clock-event reasons and no SM clock readings)
    throttle_evidence: list[str] = []
    unsupported: dict[str, str] = {}  # readings the device or driver refused, with the error it gave
