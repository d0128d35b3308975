import numpy as np
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
