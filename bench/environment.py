"""Environment fingerprint written beside the results: what a reader needs to repeat the numbers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.results import now_iso

LIBRARIES = (
    "torch",
    "transformers",
    "huggingface-hub",
    "tokenizers",
    "safetensors",
    "numpy",
    "pydantic",
    "accelerate",
    "diffusers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "torchao",
    "nvidia-ml-py",
    "aigc-bench",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=cwd or Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _gpus() -> tuple[list[dict[str, Any]], str | None]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return [], None
    gpus = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        gpus.append(
            {
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
            }
        )
    driver = pynvml.nvmlSystemGetDriverVersion()
    return gpus, driver.decode() if isinstance(driver, bytes) else driver


def collect(environ: Mapping[str, str] | None = None, code: Path | None = None) -> dict[str, Any]:
    """This machine and software. `environ`: the workers' environment when it is not this process's (an arm
    of `bench ab`); `code`: the directory the workers import `bench` from when it is not this checkout."""
    import psutil
    import torch

    gpus, driver = _gpus()
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    environ = os.environ if environ is None else environ
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=code)
    return {
        "timestamp": now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": {
            "model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "memory_total_bytes": psutil.virtual_memory().total,
            "torch_threads": torch.get_num_threads(),
        },
        "gpus": gpus,
        "gpu_name": gpus[0]["name"] if gpus else None,
        "driver": driver,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "libraries": versions,
        "git_commit": _git("rev-parse", "HEAD", cwd=code),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "env": {
            k: environ[k]
            for k in (
                "HF_HUB_OFFLINE",
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
                "CUDA_VISIBLE_DEVICES",
                "BENCH_INJECT_SLOWDOWN",
            )
            if k in environ
        },
    }
