"""The CUDA measurement path on the CPU, through thin fakes at the library boundary only: `torch.cuda.Event`,
`torch.cuda.synchronize` and the allocator's peak counters, and NVML's functions (pynvml's own error classes).
The code under test is the real bench.measure / bench.roofline.calibrate code. What these fakes cannot
show (that CUDA events bound the GPU work, that NVML's figures are right) only a GPU run verifies:
docs/testing.md, "Fakes and what only a GPU verifies"."""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import pynvml
import pytest
import torch

from bench.measure import memory
from bench.measure.memory import MemoryTracker, NvmlSampler, NvmlUnavailable
from bench.measure.timing import CudaEventClock, SyncClock
from bench.roofline.calibrate import _Timer

CUDA0 = torch.device("cuda", 0)
UUID = "8f3c2a8e-1111-2222-3333-444455556666"


# --- fake torch.cuda ----------------------------------------------------------------------------------------


class FakeCuda:
    """torch.cuda's timing and allocator entry points, recording every call in `log` in order."""

    def __init__(self, monkeypatch, elapsed_ms=None, sync_s: float = 0.0, uuid=UUID):
        self.log: list[tuple] = []
        self.elapsed_ms = list(elapsed_ms or [])  # what successive elapsed_time calls return
        self.sync_s = sync_s  # how long a synchronize waits (pending GPU work)
        self.allocated_peak, self.reserved_peak = 0, 0
        self.uuid = uuid
        fake = self

        class Event:
            count = 0

            def __init__(self, enable_timing=False):
                assert enable_timing, "timing events need enable_timing=True"
                Event.count += 1
                self.id, self.recorded, self.done = Event.count, False, False
                fake.log.append(("Event", self.id))

            def record(self, stream=None):
                self.recorded = True
                fake.log.append(("record", self.id))

            def synchronize(self):
                assert self.recorded
                self.done = True
                fake.log.append(("event.synchronize", self.id))

            def elapsed_time(self, end):
                # CUDA refuses (cudaErrorNotReady) until the end event has completed
                if not (self.recorded and end.done):
                    raise RuntimeError("CUDA error: device not ready")
                fake.log.append(("elapsed_time", self.id, end.id))
                return fake.elapsed_ms.pop(0)

        def synchronize(device=None):
            time.sleep(fake.sync_s)
            fake.log.append(("synchronize", device, time.perf_counter_ns()))

        def reset_peak_memory_stats(device=None):
            fake.log.append(("reset_peak_memory_stats", device))
            fake.allocated_peak = fake.reserved_peak = 0

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset_peak_memory_stats)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: fake.allocated_peak)
        monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: fake.reserved_peak)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(uuid=fake.uuid))

    def names(self) -> list[str]:
        return [entry[0] for entry in self.log]


# --- clocks -------------------------------------------------------------------------------------------------


def test_cuda_event_clock_converts_ms_and_waits_for_the_end_event(monkeypatch):
    cuda = FakeCuda(monkeypatch, elapsed_ms=[12.5, 0.25])
    clock = CudaEventClock(CUDA0)
    start, end = clock.mark(), clock.mark()
    assert clock.seconds(start, end) == pytest.approx(0.0125)  # 12.5 ms
    # each mark is a timing event recorded at once; the end event is waited for before elapsed_time reads it
    assert cuda.names() == ["Event", "record", "Event", "record", "event.synchronize", "elapsed_time"]
    assert cuda.log[4] == ("event.synchronize", end.id) and cuda.log[5] == ("elapsed_time", start.id, end.id)
    assert clock.seconds(start, clock.mark()) == pytest.approx(0.00025)


def test_cuda_event_clock_never_reads_an_unfinished_event(monkeypatch):
    """The fake refuses elapsed_time before the end event completed, as CUDA does: the clock must wait."""
    FakeCuda(monkeypatch, elapsed_ms=[1.0])
    clock = CudaEventClock(CUDA0)
    start, end = clock.mark(), clock.mark()
    with pytest.raises(RuntimeError, match="not ready"):
        start.elapsed_time(end)  # what reading without waiting would do
    assert clock.seconds(start, end) == pytest.approx(1e-3)


def test_cuda_event_clock_synchronize_is_the_device(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    CudaEventClock(CUDA0).synchronize()
    assert [e[:2] for e in cuda.log] == [("synchronize", CUDA0)]


def test_sync_clock_waits_for_the_device_before_reading_the_host_clock(monkeypatch):
    """Pending GPU work (a synchronize that takes 50 ms) falls inside the timed region: the host clock is
    read after the device synchronised, at both ends."""
    cuda = FakeCuda(monkeypatch, sync_s=0.05)
    clock = SyncClock(CUDA0)
    t0 = time.perf_counter()
    a = clock.mark()
    b = clock.mark()
    wall = time.perf_counter() - t0
    (_, dev_a, synced_a), (_, dev_b, synced_b) = cuda.log
    assert dev_a == dev_b == CUDA0
    assert synced_a <= a and synced_b <= b  # each host reading follows its synchronize
    assert 0.045 <= clock.seconds(a, b) <= wall  # the second synchronize's wait is measured
    clock.synchronize()
    assert len(cuda.log) == 3 and cuda.log[2][:2] == ("synchronize", CUDA0)


def test_calibration_timer_cuda_branch(monkeypatch):
    cuda = FakeCuda(monkeypatch, elapsed_ms=[4.0, 2.0, 3.0])
    calls = []
    timer = _Timer(CUDA0)
    out = timer.samples(lambda: calls.append(len(cuda.log)), min_calls=3, min_time_s=0.0)
    assert out == [pytest.approx(0.004), pytest.approx(0.002), pytest.approx(0.003)]  # ms → s
    assert len(calls) == 4  # one warm-up call, then three timed
    names = cuda.names()
    # the warm-up is finished (device synchronize) before the first timed call's start event
    assert names[:2] == ["synchronize", "Event"]
    # each timed call: two events, start recorded before fn runs, end after, end waited for, then read
    first = cuda.log[1:7]
    assert [e[0] for e in first] == ["Event", "Event", "record", "record", "event.synchronize", "elapsed_time"]
    assert calls[1] == 4  # fn ran after start.record() (log index 3), before end.record()


def test_calibration_timer_min_time_extends_the_calls(monkeypatch):
    FakeCuda(monkeypatch, elapsed_ms=[400.0] * 10)  # 0.4 s per call
    out = _Timer(CUDA0).samples(lambda: None, min_calls=1, min_time_s=1.0)
    assert len(out) == 3  # 0.4, 0.8, 1.2 s: the third reaches min_time_s


# --- fake NVML ----------------------------------------------------------------------------------------------


class FakeNvml:
    """pynvml's functions with recorded readings: `used` is served in order (the last one repeats), and
    `processes` likewise (a list of (pid, usedGpuMemory) per reading, or an error code to raise)."""

    def __init__(
        self, monkeypatch, used=(1,), processes=((),), init_error=None, uuids=(f"GPU-{UUID}",), memory_error=None
    ):
        self.used, self.processes = list(used), list(processes)
        self.served = threading.Event()  # set once every recorded reading was served
        self.initialised = 0
        self.uuid_asked: list[str] = []
        self.lock = threading.Lock()

        def init():
            if init_error is not None:
                raise pynvml.NVMLError(init_error)
            self.initialised += 1

        def shutdown():
            self.initialised -= 1

        def by_uuid(uuid):
            self.uuid_asked.append(uuid)
            if uuid not in uuids:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return ("handle", uuid)

        def by_index(index):
            raise AssertionError("the device must never be looked up by index")

        def memory_info(handle):
            assert handle == ("handle", f"GPU-{UUID}")
            if memory_error is not None:
                raise pynvml.NVMLError(memory_error)
            with self.lock:
                value = self.used.pop(0) if len(self.used) > 1 else self.used[0]
            return SimpleNamespace(used=value, total=80 * 2**30, free=0)

        def running(handle):
            with self.lock:
                reading = self.processes.pop(0) if len(self.processes) > 1 else self.processes[0]
                if len(self.processes) == 1 and len(self.used) == 1:
                    self.served.set()
            if isinstance(reading, int):
                raise pynvml.NVMLError(reading)
            return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in reading]

        for name, fn in (
            ("nvmlInit", init),
            ("nvmlShutdown", shutdown),
            ("nvmlDeviceGetHandleByUUID", by_uuid),
            ("nvmlDeviceGetHandleByIndex", by_index),
            ("nvmlDeviceGetMemoryInfo", memory_info),
            ("nvmlDeviceGetComputeRunningProcesses", running),
        ):
            monkeypatch.setattr(pynvml, name, fn)

    def wait_served(self):
        assert self.served.wait(5), "the sampling thread did not read every recorded value"


ME, OTHER = os.getpid(), os.getpid() + 1


def test_nvml_sampler_keeps_this_process_and_the_device_peaks(monkeypatch):
    FakeCuda(monkeypatch)
    nv = FakeNvml(
        monkeypatch,
        used=[100, 900, 400, 300],
        processes=[[(ME, 10), (OTHER, 5000)], [(OTHER, 7000), (ME, 70)], [(ME, 40)], [(ME, None)]],
    )
    with NvmlSampler(CUDA0, interval_s=0.001) as s:
        nv.wait_served()
    assert s.device_peak == 900
    assert s.process_peak == 70  # another process's larger figure is not ours; None (unknown) is skipped
    assert s.error is None and s.process_error is None
    assert nv.uuid_asked == [f"GPU-{UUID}"] and nv.initialised == 0  # matched by UUID; shut down after


def test_nvml_process_list_error_keeps_the_device_figure_and_says_why(monkeypatch):
    FakeCuda(monkeypatch)
    nv = FakeNvml(monkeypatch, used=[100, 250], processes=[pynvml.NVML_ERROR_NO_PERMISSION])
    with NvmlSampler(CUDA0, interval_s=0.001) as s:
        nv.wait_served()
    assert s.device_peak == 250 and s.process_peak is None
    assert "nvmlDeviceGetComputeRunningProcesses failed" in s.process_error
    assert "Insufficient Permissions" in s.process_error


def test_nvml_process_never_listed_is_said(monkeypatch):
    """In a container NVML lists host PIDs: this process's PID never appears."""
    FakeCuda(monkeypatch)
    nv = FakeNvml(monkeypatch, used=[5], processes=[[(OTHER, 123)]])
    with NvmlSampler(CUDA0, interval_s=0.001) as s:
        nv.wait_served()
    assert s.process_peak is None and f"pid {ME}" in s.process_error and "never appeared" in s.process_error


def test_nvml_memory_reading_error_voids_the_device_peak(monkeypatch):
    FakeCuda(monkeypatch)
    nv = FakeNvml(monkeypatch, processes=[[(ME, 10)]], memory_error=pynvml.NVML_ERROR_GPU_IS_LOST)
    with NvmlSampler(CUDA0, interval_s=0.001) as s:
        nv.wait_served()
    assert s.device_peak is None and "GPU is lost" in s.error


def test_nvml_uuid_mismatch_raises_instead_of_reading_another_gpu(monkeypatch):
    FakeCuda(monkeypatch, uuid="aaaaaaaa-0000-0000-0000-000000000000")
    nv = FakeNvml(monkeypatch)  # NVML knows only GPU-UUID, not the device torch names
    with pytest.raises(NvmlUnavailable, match="no device with cuda:0's UUID GPU-aaaaaaaa"):
        NvmlSampler(CUDA0)
    assert nv.initialised == 0  # initialised, then shut down again


def test_nvml_no_uuid_from_torch_raises(monkeypatch):
    FakeCuda(monkeypatch, uuid=None)
    FakeNvml(monkeypatch)
    with pytest.raises(NvmlUnavailable, match="no UUID"):
        memory.nvml_handle(CUDA0)


# --- the CUDA branch of the memory tracker ------------------------------------------------------------------


def test_tracker_resets_cuda_peaks_after_synchronizing_and_reads_them_after(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    cuda.allocated_peak = cuda.reserved_peak = 10 * 2**30  # the load's peak, before the measured phase
    nv = FakeNvml(monkeypatch, used=[3000, 5000], processes=[[(ME, 2000)], [(ME, 2500)]])
    tracker = MemoryTracker(CUDA0)
    with tracker:
        assert [e[0] for e in cuda.log] == ["synchronize", "reset_peak_memory_stats"]
        assert cuda.log[0][1] == CUDA0 and cuda.log[1][1] == CUDA0
        cuda.allocated_peak, cuda.reserved_peak = 3 * 2**20, 4 * 2**20  # what the measured phase allocates
        nv.wait_served()
    m = tracker.metrics(lifetime_host_peak=None)
    assert (m.cuda_allocated_peak_bytes, m.cuda_reserved_peak_bytes) == (3 * 2**20, 4 * 2**20)
    assert (m.nvml_device_used_peak_bytes, m.nvml_process_peak_bytes) == (5000, 2500)
    assert m.nvml_error is None and m.nvml_process_error is None and tracker.warnings() == []


def test_tracker_records_why_nvml_failed_to_initialise(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    FakeNvml(monkeypatch, init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    tracker = MemoryTracker(CUDA0)
    with tracker:
        cuda.allocated_peak = 2**20
    m = tracker.metrics(None)
    assert m.cuda_allocated_peak_bytes == 2**20  # torch's own figures remain
    assert m.nvml_device_used_peak_bytes is None and m.nvml_process_peak_bytes is None
    assert m.nvml_error.startswith("NVML unavailable: NVMLError_LibraryNotFound")
    assert tracker.warnings() == [f"NVML device memory not measured: {m.nvml_error}"]


def test_tracker_records_a_device_it_cannot_match(monkeypatch):
    """Under CUDA_VISIBLE_DEVICES torch's cuda:0 is not NVML's index 0: with no UUID match there is no
    figure at all (the fake fails any index lookup), and the record's warning says why."""
    FakeCuda(monkeypatch, uuid="bbbbbbbb-0000-0000-0000-000000000000")
    FakeNvml(monkeypatch, used=[999])
    tracker = MemoryTracker(CUDA0)
    with tracker:
        pass
    m = tracker.metrics(None)
    assert m.nvml_device_used_peak_bytes is None and "NvmlUnavailable" in m.nvml_error
    assert len(tracker.warnings()) == 1 and "UUID GPU-bbbbbbbb" in tracker.warnings()[0]


def test_tracker_warns_when_only_the_process_figure_is_missing(monkeypatch):
    FakeCuda(monkeypatch)
    nv = FakeNvml(monkeypatch, used=[7, 8], processes=[pynvml.NVML_ERROR_NOT_SUPPORTED])
    tracker = MemoryTracker(CUDA0)
    with tracker:
        nv.wait_served()
    m = tracker.metrics(None)
    assert m.nvml_device_used_peak_bytes == 8 and m.nvml_process_peak_bytes is None and m.nvml_error is None
    assert tracker.warnings() == [f"NVML per-process memory not measured: {m.nvml_process_error}"]
    assert "Not Supported" in m.nvml_process_error


def test_tracker_on_the_cpu_touches_no_cuda(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    tracker = MemoryTracker(torch.device("cpu"))
    with tracker:
        pass
    m = tracker.metrics(None)
    assert cuda.log == [] and m.cuda_allocated_peak_bytes is None and m.nvml_error is None
    assert tracker.warnings() == []
