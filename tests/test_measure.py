import time

import numpy as np
import pytest
import torch

from bench.measure.memory import MemoryTracker, host_rss_peak_bytes, reset_host_rss_peak
from bench.measure.timing import CudaEventClock, HostClock, SyncClock, make_clock


def test_clock_choice_follows_device():
    # Constructing the CUDA clocks touches no GPU, so the choice is testable on the CPU.
    assert isinstance(make_clock(torch.device("cpu")), HostClock)
    assert isinstance(make_clock(torch.device("cuda:0")), CudaEventClock)
    assert isinstance(make_clock(torch.device("cuda:0"), prefer_sync=True), SyncClock)


def test_host_clock_measures_elapsed_time():
    import time

    clock = HostClock()
    a = clock.mark()
    time.sleep(0.05)
    b = clock.mark()
    assert 0.045 < clock.seconds(a, b) < 0.5


def test_measured_peak_is_reset_and_tracks_allocations():
    big = np.ones(64 * 2**20 // 8)  # 64 MiB touched before the measured phase
    before = host_rss_peak_bytes()
    del big
    tracker = MemoryTracker(torch.device("cpu"))
    with tracker:
        during = np.ones(256 * 2**20 // 8)  # 256 MiB touched inside it
        during.sum()
    m = tracker.metrics(before)
    assert m.host_rss_measured_peak_bytes is not None  # Linux: VmHWM reset through clear_refs works
    assert m.host_rss_peak_bytes >= m.host_rss_measured_peak_bytes >= 256 * 2**20
    assert m.cuda_allocated_peak_bytes is None and m.nvml_process_peak_bytes is None
    del during
    # After a reset, the peak restarts from the current RSS, below the earlier peak.
    assert reset_host_rss_peak()
    assert host_rss_peak_bytes() < m.host_rss_peak_bytes


# --- the real CUDA path: runs where a GPU is (the logic is tested on the CPU in test_measure_cuda_fakes.py) ---

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device; the CPU-side logic is tested through fakes in tests/test_measure_cuda_fakes.py",
)


@needs_cuda
def test_real_cuda_events_time_the_gpu_work_not_its_launch():
    dev = torch.device("cuda", torch.cuda.current_device())
    clock = CudaEventClock(dev)
    x = torch.randn(4096, 4096, device=dev)
    (x @ x).abs().amax()  # warm-up: cuBLAS initialises on the host at the first matmul
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    start = clock.mark()
    for _ in range(20):  # ~2.7 TFLOP: far longer on the GPU than launching it takes on the host
        x = x @ x
        x = x / x.abs().amax()
    end = clock.mark()
    launch_s = time.perf_counter() - t0
    gpu_s = clock.seconds(start, end)
    wall_s = time.perf_counter() - t0  # a second clock: the host's, after the end event completed
    assert launch_s < gpu_s <= wall_s


@needs_cuda
def test_real_cuda_memory_tracker_and_nvml():
    dev = torch.device("cuda", torch.cuda.current_device())
    torch.empty(1, device=dev)  # a CUDA context before the measured phase
    tracker = MemoryTracker(dev)
    with tracker:
        x = torch.ones(256 * 2**20 // 4, device=dev)  # 256 MiB allocated inside the phase
        torch.cuda.synchronize(dev)
        time.sleep(0.05)  # a few NVML samples while it is held
    m = tracker.metrics(None)
    del x
    assert m.cuda_allocated_peak_bytes >= 256 * 2**20 and m.cuda_reserved_peak_bytes >= m.cuda_allocated_peak_bytes
    assert m.nvml_error is None, m.nvml_error  # the device is found by its UUID
    assert m.nvml_device_used_peak_bytes >= 256 * 2**20
    # this process's own figure, or why NVML could not give it (another PID namespace): never silent
    assert (m.nvml_process_peak_bytes or 0) >= 256 * 2**20 or m.nvml_process_error, m
