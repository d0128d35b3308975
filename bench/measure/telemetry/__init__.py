"""Device telemetry of the measured phase: energy (NVML counter or power integration on NVIDIA GPUs, RAPL on
the CPU, otherwise unavailable with the reason), power, clocks, temperature, utilisation, clock-event
(throttle) reasons, and the validity verdict they give. See docs/telemetry.md.

Public: `TelemetryTracker` (wrap a phase), `energy_units` (work done), `per_unit`, the schema models.
"""

from bench.measure.telemetry.schema import Energy, EnergyPerUnit, Series, Telemetry, TelemetrySpec
from bench.measure.telemetry.tracker import TelemetryTracker, per_unit
from bench.measure.telemetry.units import energy_units

__all__ = [
    "Energy",
    "EnergyPerUnit",
    "Series",
    "Telemetry",
    "TelemetrySpec",
    "TelemetryTracker",
    "energy_units",
    "per_unit",
]
