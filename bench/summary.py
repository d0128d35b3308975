"""The end-of-sweep table, as rich (terminal) and GitHub markdown (summary.md)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table

from bench.results import Record, primary_throughput

COLUMNS = (
    "scenario",
    "model",
    "backend",
    "precision",
    "batch",
    "status",
    "throughput",
    "TTFT p50",
    "TPOT p50",
    "latency p50",
    "latency p99",
    "peak memory",
    "valid",
    "note",
)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_bytes(b: int | None) -> str:
    if not b:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.2f} {unit}"
    return f"{b} B"


def peak_memory_bytes(r: Record) -> int | None:
    """The peak of the measured phase, on what binds on the run's device: GPU memory on CUDA (the process's
    NVML peak, sampled during the measured phase, else torch's reserved peak, reset before it), host RSS
    on the CPU (VmHWM reset before the measured phase; the whole-life peak where the reset was refused)."""
    if r.memory is None:
        return None
    m = r.memory
    if r.device.startswith("cuda"):
        return m.nvml_process_peak_bytes or m.cuda_reserved_peak_bytes
    return m.host_rss_measured_peak_bytes or m.host_rss_peak_bytes


def lifetime_peak_bytes(r: Record) -> int | None:
    """The worker's whole-life peak (load, export, compile, quantize included): host RSS on the CPU; on CUDA
    no whole-life device figure is recorded (None)."""
    if r.memory is None or r.device.startswith("cuda"):
        return None
    return r.memory.host_rss_peak_bytes


def row(r: Record) -> list[str]:
    base = [r.scenario, r.model, r.backend, r.precision, str(r.batch_size)]
    if r.metrics is None:
        return base + [r.status] + ["-"] * 7 + [_short(r.error or "")]
    m = r.metrics
    tp = primary_throughput(r)
    return base + [
        r.status,
        f"{tp[1]:.1f} {tp[0].unit}" if tp is not None else "-",
        fmt_seconds(_p50(m, "ttft_s")),
        fmt_seconds(_p50(m, "tpot_s")),
        fmt_seconds(m.latency_s.p50),
        fmt_seconds(m.latency_s.p99),
        fmt_bytes(peak_memory_bytes(r)),
        "yes" if r.valid else "no",
        _short("; ".join(r.invalid_reasons)),
    ]


def _p50(metrics, name: str) -> float | None:
    """p50 of a distribution the record's workload may not measure (the table's TTFT/TPOT columns)."""
    stats = getattr(metrics, name, None)
    return stats.p50 if stats is not None else None


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rich_table(records: list[Record], title: str = "results") -> RenderableType:
    """The verdict (bench.report.verdict) above the table of every record."""
    from bench.report.verdict import rich_verdict, verdict_of_records

    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(*row(r))
    return Group(rich_verdict(verdict_of_records(records)), table)


def markdown(records: list[Record]) -> str:
    """The verdict, then one row per record."""
    from bench.report.verdict import markdown_verdict, verdict_of_records

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in records:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row(r)) + " |")
    return markdown_verdict(verdict_of_records(records)) + "\n## Every record\n\n" + "\n".join(lines) + "\n"
