"""The units of work a measured phase did, which energy is divided by.

Knowledge of tasks that belongs to the workloads: kept in this one function until each workload declares
its own (then `energy_units` becomes a method of `bench.workloads.base.Workload` and this module goes).
The first key is the task's primary energy unit (what charts and the gate show).
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
    """Work done by `calls` measured calls of `batch_size` (text generation: `new_tokens` per sequence)."""
    sequences = calls * batch_size
    if task == "text-generation":
        return {"output_tokens": sequences * int(workload["new_tokens"]), "sequences": sequences}
    if task == "feature-extraction":
        return {"sequences": sequences}
    if task == "text-to-image":
        return {"images": sequences}
    return {}


def primary_energy(telemetry: Any) -> tuple[str, float] | None:
    """("J per output token", value) of a record's telemetry in its primary unit; None when not measured."""
    e = getattr(telemetry, "energy", None)
    if e is None or not e.available or e.per_unit is None or not e.units:
        return None
    unit = next(iter(e.units))
    value = getattr(e.per_unit, PER_UNIT_FIELD.get(unit, ""), None)
    return (f"J per {unit.removesuffix('s').replace('_', ' ')}", value) if value is not None else None
