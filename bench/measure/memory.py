"""Memory trackers for the measured phase of one run: host peak RSS (VmHWM, reset through
/proc/self/clear_refs), torch's CUDA peaks (reset before the phase), and NVML process/device memory sampled by
a thread (docs/metrics.md)."""

from __future__ import annotations

import os
import threading
from typing import Any

from pydantic import BaseModel


class MemoryMetrics(BaseModel):
    host_rss_peak_bytes: int | None = None  # whole process lifetime (load included)
    host_rss_measured_peak_bytes: int | None = None  # measured phase only
    cuda_allocated_peak_bytes: int | None = None
    cuda_reserved_peak_bytes: int | None = None
    nvml_process_peak_bytes: int | None = None
    nvml_device_used_peak_bytes: int | None = None


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def host_rss_peak_bytes() -> int | None:
    peak = _status_kib("VmHWM")
    if peak is None:  # not Linux: best effort, current RSS
        import psutil

        peak = psutil.Process().memory_info().rss
    return peak


def reset_host_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def nvml_handle(device: Any):
    """NVML numbers GPUs physically; torch numbers them after CUDA_VISIBLE_DEVICES. Match by UUID."""
    import pynvml
    import torch

    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)


class NvmlSampler:
    """Polls NVML every `interval_s` in a daemon thread; keeps the peaks."""

    def __init__(self, device: Any, interval_s: float = 0.01):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = nvml_handle(device)
        self._pid = os.getpid()
        self._interval = interval_s
        self._stop = threading.Event()
        self.process_peak: int | None = None
        self.device_peak: int | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        nv = self._nvml
        used = nv.nvmlDeviceGetMemoryInfo(self._handle).used
        self.device_peak = max(self.device_peak or 0, used)
        try:
            for proc in nv.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == self._pid and proc.usedGpuMemory is not None:
                    self.process_peak = max(self.process_peak or 0, proc.usedGpuMemory)
        except nv.NVMLError:
            pass  # containers may hide process info: the device figure remains

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> "NvmlSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class MemoryTracker:
    """Wraps the measured phase: `with tracker: ...` then `tracker.metrics()`."""

    def __init__(self, device: Any):
        self.device = device
        self.is_cuda = getattr(device, "type", "") == "cuda"
        self._nvml: NvmlSampler | None = None
        self._host_reset = False
        self._measured_peak: int | None = None

    def __enter__(self) -> "MemoryTracker":
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            try:
                self._nvml = NvmlSampler(self.device).__enter__()
            except Exception:  # NVML missing (e.g. no driver library): torch's own figures remain
                self._nvml = None
        self._host_reset = reset_host_rss_peak()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._nvml is not None:
            self._nvml.__exit__(*exc)
        self._measured_peak = host_rss_peak_bytes() if self._host_reset else None

    def metrics(self, lifetime_host_peak: int | None) -> MemoryMetrics:
        m = MemoryMetrics(host_rss_peak_bytes=max(filter(None, [lifetime_host_peak, self._measured_peak]), default=None),
                          host_rss_measured_peak_bytes=self._measured_peak)
        if self.is_cuda:
            import torch

            m.cuda_allocated_peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
            m.cuda_reserved_peak_bytes = int(torch.cuda.max_memory_reserved(self.device))
            if self._nvml is not None:
                m.nvml_process_peak_bytes = self._nvml.process_peak
                m.nvml_device_used_peak_bytes = self._nvml.device_peak
        return m


# --- GPUs a point was given (the Ray executor checks them before its worker starts) ----------------------------

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_identities(indices: list[int]) -> list[dict[str, Any]]:
    """NVML name and UUID of each GPU (NVML's physical index), or why NVML could not say."""
    try:
        import pynvml

        pynvml.nvmlInit()
        out = []
        for i in indices:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            out.append({"index": i, "name": _text(pynvml.nvmlDeviceGetName(h)),
                        "uuid": _text(pynvml.nvmlDeviceGetUUID(h))})
        return out
    except Exception as exc:  # no driver library (a CPU machine), or a GPU NVML does not know
        return [{"index": i, "error": f"NVML: {type(exc).__name__}: {exc}"} for i in indices]


def gpu_processes(indices: list[int], own_pids: frozenset[int] = frozenset()) -> dict[str, Any]:
    """The compute and graphics processes on these GPUs other than `own_pids`, with the device memory NVML
    says each uses: {"processes": [{"index", "uuid", "pid", "used_bytes"}]}, or {"error": why not known}."""
    try:
        import pynvml

        pynvml.nvmlInit()
        found: dict[tuple[int, int], dict[str, Any]] = {}
        for i in indices:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = _text(pynvml.nvmlDeviceGetUUID(h))
            for query in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                for proc in query(h):
                    if proc.pid not in own_pids:
                        found.setdefault((i, proc.pid), {"index": i, "uuid": uuid, "pid": proc.pid,
                                                         "used_bytes": proc.usedGpuMemory})
        return {"processes": list(found.values())}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def busy_reason(found: dict[str, Any]) -> str | None:
    """Why a run is invalid because its GPU was shared as it started (None: it was not); a reason starting
    'could not' when NVML could not tell (a warning, not invalidity)."""
    if "error" in found:
        return f"could not check whether another process used the GPU as the run started (NVML {found['error']})"
    if not found["processes"]:
        return None
    used = ", ".join(f"pid {p['pid']} on GPU {p['index']} ({p['uuid']}) using "
                     + (f"{p['used_bytes'] / 2**20:.0f} MiB" if p["used_bytes"] is not None else "unknown memory")
                     for p in found["processes"])
    return f"the GPU was in use by another process when the run started: {used}"
