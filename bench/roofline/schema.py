"""The `roofline` section of a record: the work of one measured unit, what was achieved, and how close that is
to the device's ceilings. Pure data (no torch): bench.results imports it. Units in field names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Source = Literal["calibrated", "datasheet"]
NO_STORED_CALIBRATION = "no calibration stored with the run"  # how a report-time section's note starts


class Ceiling(BaseModel):
    """Peak rates of one device from one source: `bench calibrate` or the datasheet table."""

    source: Source
    device_name: str
    memory_bytes_per_s: float | None = None
    matmul_flops_per_s: dict[str, float] = {}  # dtype (fp32, tf32, fp16, bf16, int8) -> peak
    unavailable: dict[str, str] = {}  # dtype -> why there is no figure
    reference: str = ""  # calibration file and date, or the datasheet


class Bound(BaseModel):
    """One phase judged against one ceiling (the roofline model)."""

    dtype: str  # whose matmul peak applies (the phase's compute dtype)
    peak_flops_per_s: float | None = None
    peak_bytes_per_s: float | None = None
    ridge_flops_per_byte: float | None = None  # peak FLOP/s ÷ peak bytes/s
    bound: Literal["memory", "compute"] | None = None  # arithmetic intensity below the ridge: memory
    attainable_flops_per_s: float | None = None  # min(peak FLOP/s, intensity × peak bytes/s)
    fraction: float | None = None  # achieved FLOP/s ÷ attainable: the efficiency
    bandwidth_fraction: float | None = None  # achieved bytes/s ÷ peak bytes/s
    compute_fraction: float | None = None  # achieved FLOP/s ÷ peak FLOP/s
    note: str | None = None  # why something is missing


class Phase(BaseModel):
    """The analytic work of one measured unit (a decode step, a prefill, a forward) and its measured time."""

    unit: str  # what one unit is, in words
    flops: float
    bytes: float
    terms: dict[str, float] = {}  # the parts the totals are made of (weights, KV cache, attention, …)
    timed_by: str  # which measurement gives the time of one unit, e.g. "tpot_s p50"
    seconds: float
    compute_dtype: str
    arithmetic_intensity_flops_per_byte: float
    achieved_flops_per_s: float
    achieved_bytes_per_s: float
    bounds: dict[str, Bound] = {}  # by ceiling source: calibrated, datasheet


class Roofline(BaseModel):
    primary: str | None = None  # the phase the record's efficiency is quoted for (decode, forward, …)
    phases: dict[str, Phase] = {}  # decode, prefill (text generation); forward (feature extraction)
    ceilings: dict[str, Ceiling] = {}  # by source
    computed_at: Literal["run", "report"] = "run"  # by the worker, or later from the record by `bench report`
    notes: list[str] = []  # what is missing and why

    def efficiency(self, source: Source = "calibrated", phase: str | None = None) -> float | None:
        """Fraction of the roofline ceiling the phase reached (primary phase by default)."""
        p = self.phases.get(phase or self.primary or "")
        b = p.bounds.get(source) if p is not None else None
        return b.fraction if b is not None else None
