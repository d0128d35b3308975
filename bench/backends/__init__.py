"""Backend registry: name -> Backend class."""

from bench.backends.base import Backend
from bench.backends.compile import CompileBackend
from bench.backends.eager import EagerBackend
from bench.backends.endpoint import EndpointBackend
from bench.backends.onnxruntime import OnnxRuntimeBackend

BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (EagerBackend, CompileBackend, OnnxRuntimeBackend, EndpointBackend)
}


def capability_markdown() -> str:
    """The capability matrix as a markdown table (the README embeds this exact text; a test checks)."""
    from bench.precisions import PRECISIONS
    from bench.workloads import WORKLOADS

    lines = ["| backend | task | device | " + " | ".join(PRECISIONS) + " |", "|---|---|---|" + "---|" * len(PRECISIONS)]
    for backend in (b for b in BACKENDS.values() if not b.remote):  # a remote backend runs what its server does
        for task in WORKLOADS:
            for device in ("cpu", "cuda"):
                cells = ["yes" if backend.unsupported_reason(task, p, device) is None else "-" for p in PRECISIONS]
                lines.append(f"| {backend.name} | {task} | {device} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
