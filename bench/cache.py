"""The one on-disk cache root every backend and store shares: `$BENCH_CACHE_DIR` (default `~/.cache/aigc-bench`).

`cache_dir("onnx")` is the ONNX export cache, `cache_dir("inductor")` torch.compile's warm cache,
`cache_dir("calibration")` the roofline calibration store. Directories are not created here.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "aigc-bench"))


def cache_dir(name: str) -> Path:
    return cache_root() / name
