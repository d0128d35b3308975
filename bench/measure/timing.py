"""Clocks for timed regions: perf_counter_ns on the host; on CUDA, events on the current stream read after the
end event completed; SyncClock (device-wide synchronize around the host clock) for work on streams torch does
not own (docs/metrics.md, "Timing")."""

from __future__ import annotations

import time
from typing import Any


class HostClock:
    """perf_counter_ns: for CPU devices, where calls return when their work is done."""

    kind = "host"

    def mark(self) -> int:
        return time.perf_counter_ns()

    def seconds(self, start: int, end: int) -> float:
        return (end - start) / 1e9

    def synchronize(self) -> None:
        pass


class CudaEventClock:
    """CUDA events on the current stream; `seconds` waits for the end event."""

    kind = "cuda-events"

    def __init__(self, device: Any):
        import torch

        self._torch = torch
        self.device = device

    def mark(self):
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start, end) -> float:
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self.device)


class SyncClock(HostClock):
    """Device-wide synchronize, then the host clock: for work on streams torch does not own."""

    kind = "cuda-sync"

    def __init__(self, device: Any):
        import torch

        self._torch = torch
        self.device = device

    def mark(self) -> int:
        self._torch.cuda.synchronize(self.device)
        return time.perf_counter_ns()

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self.device)


def make_clock(device: Any, prefer_sync: bool = False):
    if getattr(device, "type", str(device)).startswith("cuda"):
        return SyncClock(device) if prefer_sync else CudaEventClock(device)
    return HostClock()
