"""The units of work a measured phase did, which energy is divided by: each workload declares its own
(`Workload.energy_units`); the first key is its primary energy unit (what charts and the gate show).
"""

from __future__ import annotations

from typing import Any

# unit of work (a key of energy_units) → field of EnergyPerUnit
PER_UNIT_FIELD = {
    "output_tokens": "output_token_j",
    "sequences": "sequence_j",
    "images": "image_j",
    "requests": "request_j",
}


def energy_units(task: str, batch_size: int, workload: dict[str, Any], calls: int) -> dict[str, int]:
    """Work done by `calls` measured calls of `batch_size`, as the task's workload counts it."""
    from bench.workloads import WORKLOADS

    found = WORKLOADS.get(task)
    return found.energy_units(batch_size, workload, calls) if found is not None else {}


def primary_energy(telemetry: Any) -> tuple[str, float] | None:
    """("J per output token", value) of a record's telemetry in its primary unit; None when not measured."""
    e = getattr(telemetry, "energy", None)
    if e is None or not e.available or e.per_unit is None or not e.units:
        return None
    unit = next(iter(e.units))
    value = getattr(e.per_unit, PER_UNIT_FIELD.get(unit, ""), None)
    return (f"J per {unit.removesuffix('s').replace('_', ' ')}", value) if value is not None else None
