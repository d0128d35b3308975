"""Environment matching for the gate: which fields of two runs' environment.json must agree before their
numbers are compared (GPU model, driver, CUDA, torch, ONNX Runtime; for CPU points the CPU model and torch's
thread count), and how a difference reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class EnvDifference:
    what: str
    baseline: Any
    current: Any

    def __str__(self) -> str:
        return f"{self.what} {_show(self.baseline)} → {_show(self.current)}"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _libs(env: dict[str, Any]) -> dict[str, Any]:
    return env.get("libraries") or {}


def _gpu_models(env: dict[str, Any]) -> list[str] | None:
    names = sorted({g.get("name") for g in env.get("gpus") or [] if g.get("name")})
    return names or ([env["gpu_name"]] if env.get("gpu_name") else None)


ENV_FIELDS = (
    ("GPU", _gpu_models),
    ("driver", lambda e: e.get("driver")),
    ("CUDA", lambda e: e.get("cuda")),
    ("torch", lambda e: _libs(e).get("torch")),
    ("onnxruntime", lambda e: _libs(e).get("onnxruntime")),
    ("onnxruntime-gpu", lambda e: _libs(e).get("onnxruntime-gpu")),
)
CPU_ENV_FIELDS = (  # the CPU path's "GPU model": only checked when a compared point ran on the CPU
    ("CPU", lambda e: (e.get("cpu") or {}).get("model")),
    ("torch threads", lambda e: (e.get("cpu") or {}).get("torch_threads")),
)


def environment_differences(
    baseline: dict[str, Any] | None, current: dict[str, Any] | None, cpu: bool
) -> list[EnvDifference]:
    if baseline is None or current is None:
        return [
            EnvDifference(
                "environment.json",
                "missing" if baseline is None else "present",
                "missing" if current is None else "present",
            )
        ]
    checks = ENV_FIELDS + (CPU_ENV_FIELDS if cpu else ())
    return [EnvDifference(what, get(baseline), get(current)) for what, get in checks if get(baseline) != get(current)]
