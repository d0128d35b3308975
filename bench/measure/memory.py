"""Memory trackers for the measured phase of one run: host peak RSS (VmHWM, reset through
/proc/self/clear_refs), torch's CUDA peaks (reset before the phase), and NVML process/device memory sampled by
a thread (docs/metrics.md). The NVML device is found by UUID only; when NVML cannot start, match the device or
read it, its figures stay None and `nvml_error` / `nvml_process_error` say why (never another device's figure)."""

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
    nvml_error: str | None = None  # why both NVML figures are missing (CUDA runs only)
    nvml_process_error: str | None = None  # why the per-process figure alone is missing


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


class NvmlUnavailable(RuntimeError):
    """NVML cannot give this device's figures; the message says why."""


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def nvml_handle(device: Any):
    """NVML numbers GPUs physically; torch numbers them after CUDA_VISIBLE_DEVICES (and by speed unless
    CUDA_DEVICE_ORDER=PCI_BUS_ID). Match by UUID; with no match there is no handle (NvmlUnavailable)."""
    import pynvml
    import torch

    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is None:
        raise NvmlUnavailable(f"torch gives no UUID for {device}, so its NVML device cannot be identified")
    uuid = str(uuid)
    name = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(name)
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML has no device with {device}'s UUID {name} ({_why(exc)})") from exc


class NvmlSampler:
    """Polls NVML every `interval_s` in a daemon thread; keeps the peaks and the first error of each kind.

    Construction raises (pynvml.NVMLError, NvmlUnavailable) when NVML cannot start or find the device."""

    def __init__(self, device: Any, interval_s: float = 0.01):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            self._handle = nvml_handle(device)
        except BaseException:
            self._shutdown()
            raise
        self._pid = os.getpid()
        self._interval = interval_s
        self._stop = threading.Event()
        self.process_peak: int | None = None
        self.device_peak: int | None = None
        self.error: str | None = None  # a device-memory reading failed
        self.process_error: str | None = None  # the process list failed or never held this process
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        nv = self._nvml
        try:
            used = nv.nvmlDeviceGetMemoryInfo(self._handle).used
            self.device_peak = max(self.device_peak or 0, used)
        except nv.NVMLError as exc:
            self.error = self.error or f"nvmlDeviceGetMemoryInfo failed: {_why(exc)}"
        try:
            for proc in nv.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == self._pid and proc.usedGpuMemory is not None:
                    self.process_peak = max(self.process_peak or 0, proc.usedGpuMemory)
        except nv.NVMLError as exc:  # containers may hide process info: the device figure remains
            self.process_error = self.process_error or f"nvmlDeviceGetComputeRunningProcesses failed: {_why(exc)}"

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
        if self.process_peak is None and self.process_error is None:
            self.process_error = (
                f"this process (pid {self._pid}) never appeared with a memory figure in NVML's "
                "process list (another PID namespace, e.g. a container?)"
            )
        if self.error is not None:  # a peak over only some readings is not the phase's peak
            self.device_peak = None
        self._shutdown()

    def _shutdown(self) -> None:
        try:  # reference-counted by NVML: other users in this process (telemetry) keep their session
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass  # the figures are taken; nothing depends on a clean shutdown


class MemoryTracker:
    """Wraps the measured phase: `with tracker: ...` then `tracker.metrics()`."""

    def __init__(self, device: Any):
        self.device = device
        self.is_cuda = getattr(device, "type", "") == "cuda"
        self._nvml: NvmlSampler | None = None
        self._nvml_error: str | None = None
        self._host_reset = False
        self._measured_peak: int | None = None

    def __enter__(self) -> "MemoryTracker":
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            try:
                self._nvml = NvmlSampler(self.device).__enter__()
            except Exception as exc:  # NVML missing (no driver library) or no matching device: torch's remain
                self._nvml = None
                self._nvml_error = f"NVML unavailable: {_why(exc)}"
        self._host_reset = reset_host_rss_peak()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._nvml is not None:
            self._nvml.__exit__(*exc)
        self._measured_peak = host_rss_peak_bytes() if self._host_reset else None

    def metrics(self, lifetime_host_peak: int | None) -> MemoryMetrics:
        m = MemoryMetrics(
            host_rss_peak_bytes=max(filter(None, [lifetime_host_peak, self._measured_peak]), default=None),
            host_rss_measured_peak_bytes=self._measured_peak,
        )
        if self.is_cuda:
            import torch

            m.cuda_allocated_peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
            m.cuda_reserved_peak_bytes = int(torch.cuda.max_memory_reserved(self.device))
            m.nvml_error = self._nvml_error
            if self._nvml is not None:
                m.nvml_process_peak_bytes = self._nvml.process_peak
                m.nvml_device_used_peak_bytes = self._nvml.device_peak
                m.nvml_error = self._nvml.error
                m.nvml_process_error = self._nvml.process_error
        return m

    def warnings(self) -> list[str]:
        """What the record should say about the NVML figures it lacks (CUDA runs)."""
        if not self.is_cuda:
            return []
        error = self._nvml_error or (self._nvml.error if self._nvml else None)
        if error:
            return [f"NVML device memory not measured: {error}"]
        if self._nvml is not None and self._nvml.process_error:
            return [f"NVML per-process memory not measured: {self._nvml.process_error}"]
        return []


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
            out.append(
                {"index": i, "name": _text(pynvml.nvmlDeviceGetName(h)), "uuid": _text(pynvml.nvmlDeviceGetUUID(h))}
            )
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
                        found.setdefault(
                            (i, proc.pid), {"index": i, "uuid": uuid, "pid": proc.pid, "used_bytes": proc.usedGpuMemory}
                        )
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
    used = ", ".join(
        f"pid {p['pid']} on GPU {p['index']} ({p['uuid']}) using "
        + (f"{p['used_bytes'] / 2**20:.0f} MiB" if p["used_bytes"] is not None else "unknown memory")
        for p in found["processes"]
    )
    return f"the GPU was in use by another process when the run started: {used}"
