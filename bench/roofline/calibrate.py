"""`bench calibrate`: measure this device's memory bandwidth (copy and read-only) and matmul throughput per
dtype (best call kept, median beside it), and store it per device under `$BENCH_CACHE_DIR/calibration/` (CPU:
per torch thread count). A dtype the device cannot run is stored as unavailable, never replaced
(docs/roofline.md).
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel

from bench.roofline.schema import Ceiling

SCHEMA_VERSION = 1
DTYPES = ("fp32", "tf32", "fp16", "bf16", "int8")
MiB = 2**20


class BandwidthResult(BaseModel):
    method: str  # what was timed and which bytes were counted
    buffer_bytes: int
    bytes_per_call: int
    best_bytes_per_s: float
    median_bytes_per_s: float
    calls: int


class MatmulResult(BaseModel):
    dtype: str
    size: int | None = None  # n of the n × n × n matmul timed
    best_flops_per_s: float | None = None
    median_flops_per_s: float | None = None
    calls: int = 0
    unavailable: str | None = None  # why this dtype was not measured


class Calibration(BaseModel):
    schema_version: int = SCHEMA_VERSION
    device_type: Literal["cpu", "cuda"]
    device_name: str
    threads: int | None = None  # CPU: torch intra-op threads the ceilings were measured with
    quick: bool
    measured_at: str
    seconds: float  # how long the calibration took
    environment: dict[str, Any]
    copy_bandwidth: BandwidthResult
    read_bandwidth: BandwidthResult | None = None
    matmul: dict[str, MatmulResult]

    @property
    def memory_bytes_per_s(self) -> float:
        read = self.read_bandwidth.best_bytes_per_s if self.read_bandwidth else 0.0
        return max(self.copy_bandwidth.best_bytes_per_s, read)

    def ceiling(self, path: Path | None = None) -> Ceiling:
        what = f"bench calibrate{' --quick' if self.quick else ''}, {self.measured_at}"
        if self.threads is not None:
            what += f", {self.threads} torch threads"
        return Ceiling(
            source="calibrated",
            device_name=self.device_name,
            memory_bytes_per_s=self.memory_bytes_per_s,
            matmul_flops_per_s={d: m.best_flops_per_s for d, m in self.matmul.items() if m.best_flops_per_s},
            unavailable={d: m.unavailable for d, m in self.matmul.items() if m.unavailable},
            reference=f"{what} ({path})" if path else what,
        )


# --- store -------------------------------------------------------------------------------------------------


def store_dir() -> Path:
    from bench.cache import cache_dir

    return cache_dir("calibration")


def slug(device_type: str, device_name: str, threads: int | None) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "unknown"
    return f"{device_type}-{name}" + (f"-{threads}threads" if device_type == "cpu" else "")


def store_path(device_type: str, device_name: str, threads: int | None) -> Path:
    return store_dir() / f"{slug(device_type, device_name, threads)}.json"


def load(device_type: str, device_name: str, threads: int | None) -> tuple[Calibration, Path] | None:
    """The stored calibration of this device (and CPU thread count), or None."""
    path = store_path(device_type, device_name, threads)
    if not path.is_file():
        return None
    try:
        return Calibration.model_validate_json(path.read_text(encoding="utf-8")), path
    except ValueError:
        return None  # a damaged file is as good as none: `bench calibrate` rewrites it


def save(cal: Calibration) -> Path:
    path = store_path(cal.device_type, cal.device_name, cal.threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(cal.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def calibrate(device: str = "auto", quick: bool = False, force: bool = False) -> tuple[Calibration, Path, bool]:
    """(calibration, its file, whether it was reused) for `device` (auto | cpu | cuda | cuda:N)."""
    dev = _device(device)
    name, threads = device_identity(dev)
    stored = None if force else load(dev.type, name, threads)
    if stored is not None and (quick or not stored[0].quick):
        return stored[0], stored[1], True
    cal = measure(dev, quick)
    return cal, save(cal), False


def device_identity(dev) -> tuple[str, int | None]:
    """(device name as records spell it, CPU thread count or None)."""
    import torch

    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev), None
    from bench.environment import cpu_model

    return cpu_model(), torch.get_num_threads()


def _device(device: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available to torch on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise RuntimeError(f"cannot calibrate device type {dev.type!r}")
    return dev


# --- measuring ---------------------------------------------------------------------------------------------


class _Timer:
    """Seconds of one call of `fn`, warm-up excluded: perf_counter_ns on the CPU, CUDA events on CUDA."""

    def __init__(self, dev):
        self.dev = dev

    def once(self, fn: Callable[[], Any]) -> float:
        import torch

        if self.dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e9

    def samples(self, fn: Callable[[], Any], min_calls: int, min_time_s: float, max_calls: int = 1000) -> list[float]:
        import torch

        fn()  # warm-up: page faults, allocator, kernel selection, clocks
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        out: list[float] = []
        while len(out) < min_calls or (sum(out) < min_time_s and len(out) < max_calls):
            out.append(self.once(fn))
        return out


def _settings(dev, quick: bool) -> dict[str, Any]:
    if dev.type == "cuda":
        return {
            "buffer_bytes": (256 if quick else 1024) * MiB,
            "max_n": 4096 if quick else 8192,
            "max_call_s": 0.05 if quick else 0.5,
            "min_calls": 3 if quick else 10,
            "min_time_s": 0.05 if quick else 0.5,
        }
    l3 = last_level_cache_bytes() or 64 * MiB
    buffer = max(4 * l3, 64 * MiB) if quick else max(8 * l3, 512 * MiB)
    try:
        import psutil

        buffer = min(buffer, psutil.virtual_memory().available // 8)  # two buffers, with room to spare
    except Exception:
        pass
    # Full: 3 s per measurement, so a busy machine's quiet moments are sampled too (the best call is kept).
    return {
        "buffer_bytes": int(buffer),
        "max_n": 1024 if quick else 2048,
        "max_call_s": 0.3 if quick else 1.5,
        "min_calls": 3,
        "min_time_s": 0.1 if quick else 3.0,
    }


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache (Linux sysfs), e.g. 32 MiB of L3; None when unknown."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        m = re.fullmatch(r"(\d+)([KMG]?)", entry.read_text().strip())
        if m:
            sizes.append(int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)])
    return max(sizes) if sizes else None


def measure(dev, quick: bool = False) -> Calibration:
    import torch

    from bench.results import now_iso

    t0 = time.perf_counter()
    settings = _settings(dev, quick)
    timer = _Timer(dev)
    copy, read = _bandwidth(dev, timer, settings)
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # the buffers are gone with _bandwidth's frame; give their memory back
    matmul = {dtype: _matmul(dev, timer, dtype, settings) for dtype in DTYPES}
    name, threads = device_identity(dev)
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "hostname": platform.node(),
        "torch_threads": torch.get_num_threads(),
        "buffer_bytes": settings["buffer_bytes"],
        "last_level_cache_bytes": last_level_cache_bytes(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(
            {
                "cuda": torch.version.cuda,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_total_bytes": props.total_memory,
                "sm_count": props.multi_processor_count,
            }
        )
    env.update(
        {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES") if k in os.environ}
    )
    return Calibration(
        device_type=dev.type,
        device_name=name,
        threads=threads,
        quick=quick,
        measured_at=now_iso(),
        seconds=time.perf_counter() - t0,
        environment=env,
        copy_bandwidth=copy,
        read_bandwidth=read,
        matmul=matmul,
    )


def _bandwidth(dev, timer: _Timer, settings: dict[str, Any]) -> tuple[BandwidthResult, BandwidthResult]:
    import torch

    n = settings["buffer_bytes"] // 4
    gen = torch.Generator(device=dev).manual_seed(0)
    src = torch.rand(n, device=dev, generator=gen)  # random, never all-zero (zero pages can be shared)
    dst = torch.empty_like(src)
    nbytes = src.numel() * src.element_size()
    copy_s = timer.samples(lambda: dst.copy_(src), settings["min_calls"], settings["min_time_s"])
    read_s = timer.samples(lambda: src.sum(), settings["min_calls"], settings["min_time_s"])
    return (
        _rate("dst.copy_(src): bytes read + bytes written (2 × buffer)", nbytes, 2 * nbytes, copy_s),
        _rate("src.sum(): bytes read (1 × buffer)", nbytes, nbytes, read_s),
    )


def _rate(method: str, buffer: int, per_call: int, samples: list[float]) -> BandwidthResult:
    rates = [per_call / s for s in samples]
    return BandwidthResult(
        method=method,
        buffer_bytes=buffer,
        bytes_per_call=per_call,
        best_bytes_per_s=max(rates),
        median_bytes_per_s=statistics.median(rates),
        calls=len(samples),
    )


def _unavailable(dev, dtype: str) -> str | None:
    import torch

    if dev.type == "cpu":
        if dtype == "tf32":
            return "TF32 is an NVIDIA tensor-core mode; CPU fp32 matmuls run in fp32"
        return None
    major, minor = torch.cuda.get_device_capability(dev)
    if dtype in ("tf32", "bf16") and major < 8:
        return f"{dtype} tensor cores need compute capability 8.0+ (this device is {major}.{minor})"
    return None


def _matmul(dev, timer: _Timer, dtype: str, settings: dict[str, Any]) -> MatmulResult:
    import torch

    reason = _unavailable(dev, dtype)
    if reason:
        return MatmulResult(dtype=dtype, unavailable=reason)
    try:
        with _tf32(dev, dtype == "tf32"):
            n = 256
            while True:  # double n up to the largest size unless the next call (8× the work) would be too slow
                call = _mm_call(dev, dtype, n)
                seconds = min(timer.samples(call, 3, 0.0))  # best of 3: one slow call must not stop the growth
                if n >= settings["max_n"] or 8 * seconds > settings["max_call_s"]:
                    break
                n *= 2
            samples = timer.samples(call, settings["min_calls"], settings["min_time_s"])
    except Exception as exc:  # the device or this torch build cannot run it: say so, don't substitute
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return MatmulResult(dtype=dtype, unavailable=f"{type(exc).__name__}: {first}")
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    rates = [2 * n**3 / s for s in samples]
    return MatmulResult(
        dtype=dtype,
        size=n,
        best_flops_per_s=max(rates),
        median_flops_per_s=statistics.median(rates),
        calls=len(samples),
    )


def _mm_call(dev, dtype: str, n: int) -> Callable[[], Any]:
    import torch

    gen = torch.Generator(device=dev).manual_seed(n)
    if dtype == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev, generator=gen)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev, generator=gen)
        return lambda: torch._int_mm(a, b)
    torch_dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(n, n, device=dev, generator=gen).to(torch_dtype)
    b = torch.randn(n, n, device=dev, generator=gen).to(torch_dtype)
    return lambda: torch.mm(a, b)


class _tf32:
    """fp32 matmuls in IEEE fp32 (tf32=False) or with TF32 tensor cores (tf32=True) inside; restored after."""

    def __init__(self, dev, tf32: bool):
        self.active = dev.type == "cuda"
        self.tf32 = tf32

    def __enter__(self):
        import torch

        if not self.active:
            return self
        matmul = torch.backends.cuda.matmul
        self.new_api = hasattr(matmul, "fp32_precision")
        if self.new_api:
            self.saved = matmul.fp32_precision
            matmul.fp32_precision = "tf32" if self.tf32 else "ieee"
        else:
            self.saved = matmul.allow_tf32
            matmul.allow_tf32 = self.tf32
        return self

    def __exit__(self, *exc):
        import torch

        if self.active:
            if self.new_api:
                torch.backends.cuda.matmul.fp32_precision = self.saved
            else:
                torch.backends.cuda.matmul.allow_tf32 = self.saved
        return False


# --- display -----------------------------------------------------------------------------------------------


def calibration_table(cal: Calibration):
    """A rich table: measured ceilings, ridge points, and the datasheet's beside them where one is known."""
    from rich.table import Table

    from bench.roofline import datasheets

    sheet = datasheets.lookup(cal.device_name) if cal.device_type == "cuda" else None
    title = f"{cal.device_name} ({cal.device_type}" + (f", {cal.threads} torch threads" if cal.threads else "") + ")"
    title += " — QUICK calibration: not a ceiling to quote" if cal.quick else ""
    table = Table(title=title)
    for col in ("measurement", "best", "median", "size", "ridge (FLOP/byte)", *(["datasheet"] if sheet else [])):
        table.add_column(col)
    bw = cal.memory_bytes_per_s
    for name, r in (("memory: copy (read + write)", cal.copy_bandwidth), ("memory: read only", cal.read_bandwidth)):
        if r is None:
            continue
        row = [
            name,
            f"{r.best_bytes_per_s / 1e9:,.1f} GB/s",
            f"{r.median_bytes_per_s / 1e9:,.1f} GB/s",
            f"{r.buffer_bytes / MiB:,.0f} MiB",
            "",
        ]
        table.add_row(*row, *([f"{sheet.memory_bytes_per_s / 1e9:,.0f} GB/s"] if sheet else []))
    for dtype, m in cal.matmul.items():
        unit = "TOP/s" if dtype == "int8" else "TFLOP/s"
        listed = sheet.matmul_flops_per_s.get(dtype) if sheet else None
        extra = [f"{listed / 1e12:,.1f} {unit}" if listed else "-"] if sheet else []
        if m.best_flops_per_s is None:
            table.add_row(f"matmul {dtype}", "unavailable", m.unavailable or "", "", "", *extra)
            continue
        table.add_row(
            f"matmul {dtype}",
            f"{m.best_flops_per_s / 1e12:,.3f} {unit}",
            f"{m.median_flops_per_s / 1e12:,.3f} {unit}",
            f"{m.size}³",
            f"{m.best_flops_per_s / bw:,.1f}",
            *extra,
        )
    return table
