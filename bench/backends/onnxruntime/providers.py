"""Which execution provider a session runs on, checked rather than trusted: onnxruntime falls back to the CPU
with only a warning when it cannot use CUDA, so the providers a session really has are checked after creating
it, after the cold calls and after the measured phase, and a fallback fails the run."""

from __future__ import annotations

from typing import Any

from bench.backends.base import Monitor
from bench.backends.onnxruntime.export_cache import versions


class ProviderFallback(RuntimeError):
    pass


# The options the check compares with what the session reports (paths and profile strings are onnxruntime's to
# normalise; these decide where and in what precision it runs).
CHECKED_OPTIONS = ("device_id", "trt_fp16_enable", "trt_engine_cache_enable")


def requested_providers(device: Any, tensorrt: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The providers a session asks for, first the one it must run on; `tensorrt`: TensorRT's options."""
    if device.type == "cuda":
        cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0})
        return [("TensorrtExecutionProvider", tensorrt), cuda] if tensorrt is not None else [cuda]
    return [("CPUExecutionProvider", {})]


def runtime_build() -> str:
    import onnxruntime as ort

    dists = [d for d, v in versions().items() if d.startswith("onnxruntime") and v]
    return (
        f"onnxruntime {ort.__version__} from package {' + '.join(dists) or 'unknown'}, "
        f"device {ort.get_device()}, available providers: {', '.join(ort.get_available_providers())}"
    )


def check_runtime(device: Any, available: list[str], build: str) -> None:
    """Refuse CUDA before exporting anything when the installed onnxruntime is a CPU build."""
    if device.type == "cuda" and "CUDAExecutionProvider" not in available:
        raise ProviderFallback(
            f"CUDAExecutionProvider is not in this onnxruntime build ({build}); install "
            "onnxruntime-gpu instead of onnxruntime (make install GPU=1)"
        )


def check_providers(
    requested: list[tuple[str, dict[str, Any]]],
    active: list[str],
    active_options: dict[str, dict[str, Any]],
    build: str,
) -> None:
    """The session must run on the provider asked for (first in its list) with the options asked for;
    onnxruntime adds CPUExecutionProvider after it for nodes the first cannot run, which is expected."""
    wanted = requested[0][0]
    if not active or active[0] != wanted:
        raise ProviderFallback(
            f"onnxruntime fell back to {', '.join(active) or 'nothing'}: {wanted} unavailable ({build})"
        )
    for key, value in requested[0][1].items():
        if key not in CHECKED_OPTIONS:
            continue
        got = active_options.get(wanted, {}).get(key)
        if str(got) != str(value):
            raise ProviderFallback(f"onnxruntime runs {wanted} with {key}={got}, not {value} as requested")


class ProviderMonitor(Monitor):
    """Re-checks the sessions' providers: onnxruntime may switch a session to the CPU after an error."""

    def __init__(self, sessions: list[Any], requested: list, build: str):
        """`requested`: one provider list for every session, or one list per session (TensorRT's options
        differ per graph)."""
        per_session = bool(requested) and isinstance(requested[0], list)
        self.sessions, self.build = sessions, build
        self.requested = requested if per_session else [requested] * len(sessions)

    def _check(self) -> None:
        for session, requested in zip(self.sessions, self.requested):
            check_providers(requested, session.get_providers(), session.get_provider_options(), self.build)

    def cold_metrics(self) -> dict[str, float]:
        self._check()
        return {}

    def end_measured(self) -> tuple[dict[str, Any], list[str]]:
        self._check()
        return {}, []
