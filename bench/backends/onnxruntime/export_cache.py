"""The ONNX export cache: `cache_dir("onnx")/<key>`, one entry per exported (or quantized) model.

The key hashes the model config, the weights' identity (source, seed, and a sampled fingerprint of the tensors
themselves), the export task, float dtype, export device type and the exporter/runtime versions, so a sweep
exports each model once. An entry is built in a temporary sibling directory (named with the builder's pid, so a
killed builder's leftovers are removed by the next one) and renamed into place once complete: a killed run
never leaves half an entry, and two runs racing for one entry both end with the same complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from bench.cache import cache_dir

CACHE_FORMAT = 2  # bump when what this module writes into a cache entry changes
META_FILE = "bench-onnx.json"  # written last into an entry: its presence marks the entry complete
VERSIONED = ("onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "onnx-ir", "torch", "transformers", "diffusers")


def versions() -> dict[str, str | None]:
    found = {}
    for dist in VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def torch_modules(model: Any, task: str) -> dict[str, Any]:
    """The torch modules holding the weights: the model, or a pipeline's components."""
    from bench.workloads import WORKLOADS

    return WORKLOADS[task].weight_modules(model)


def weights_fingerprint(modules: dict[str, Any], samples: int = 1024) -> str:
    """Name, shape, dtype and up to `samples` evenly spaced values of every tensor: cheap even for 7B
    models, and it changes when the weights do (another seed, another initialiser, other files)."""
    h = hashlib.sha256()
    tensors = ((f"{part}.{name}", t) for part, m in modules.items() for name, t in m.state_dict().items())
    for name, tensor in tensors:
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples)
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(flat[::step][:samples].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def export_key(
    model: Any, run: Any, device: Any, opset: int | None, kind: str, shape: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the exported files depend on (session options are not part of it: they change no file)."""
    modules = torch_modules(model, run.task)
    weights = {
        "kind": run.weights,
        "source": run.model_kind,
        "model": run.model if run.model_kind == "bundled" else run.model_location,
        "seed": run.measure.seed if run.weights == "random" else None,
        "fingerprint": weights_fingerprint(modules),
    }
    config = {
        part: dict(m.config.to_dict() if hasattr(m.config, "to_dict") else m.config) for part, m in modules.items()
    }
    first = next(p for m in modules.values() for p in m.parameters())
    return {
        "format": CACHE_FORMAT,
        "kind": kind,
        "shape": shape or {},
        "config": config,
        "weights": weights,
        "dtype": str(first.dtype),
        "export_device": device.type,
        "opset": opset,
        "versions": versions(),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cached(entry: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """("hit" | "miss", metadata) for cache entry `entry`; on a miss, `build(tmp_dir)` writes the files
    into a temporary sibling directory, which is renamed to `entry` only once complete."""
    meta_path = entry / META_FILE
    if meta_path.is_file():
        return "hit", json.loads(meta_path.read_text())
    entry.parent.mkdir(parents=True, exist_ok=True)
    for stale in entry.parent.glob(f".tmp-{entry.name}-*"):  # left by a killed run
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-{os.getpid()}-", dir=entry.parent))
    try:
        meta = build(tmp)
        tmp.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        if entry.exists() and not meta_path.is_file():
            shutil.rmtree(entry)  # an entry without its metadata file is not one of ours, or incomplete
        try:
            os.rename(tmp, entry)
        except OSError:
            if not meta_path.is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another run published the same entry first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return "miss", meta


def export(
    model: Any,
    run: Any,
    device: Any,
    opset: int | None,
    kind: str,
    exporter: Callable[[Path], dict[str, Any]],
    shape: dict[str, Any] | None = None,
) -> tuple[Path, str, dict[str, Any]]:
    """(directory with the exported graphs, "hit" | "miss", its metadata); on a miss `exporter(dir)` writes the
    graphs (bench.backends.onnxruntime.graphs) and returns what the runtime needs to know of them."""
    key_inputs = export_key(model, run, device, opset, kind, shape)
    key = digest(key_inputs)

    def build(out: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        graph = exporter(out)
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)
        return {
            "kind": "export",
            "key": key,
            "export_s": time.perf_counter() - t0,
            "inputs": key_inputs,
            "graph": graph,
        }

    entry = cache_dir("onnx") / key
    status, meta = cached(entry, build)
    return entry, status, meta
