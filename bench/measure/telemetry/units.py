"""The units of work a measured phase did, which energy is divided by.

Knowledge of tasks that belongs to the workloads: kept in this one function until each workload declares
its own (then `energy_units` becomes a method of `bench.workloads.base.Workload` and this module goes).
The first key is the task's primary energy unit (what charts and the gate show).
"""

from __future__ import annotations

from typing import Any

# unit of work (a key of energy_units) → field of EnergyPerUnit
PER_UNIT_FIELD = {"output_tokens": "output_token_j", "sequences": "sequence_j", "images": "image_j",
                  "requests": "request_j"}


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
