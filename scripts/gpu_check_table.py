"""The short markdown table of scripts/gpu_check.sh: one row per record of the run directories under RUNS.

    python scripts/gpu_check_table.py RUNS [--skipped FILE] [--environment FILE]

Throughput is the record's primary one (decode tokens/s where there is a decode phase); the bandwidth columns are
the decode step's (or forward's) achieved bytes/s over the calibrated and the datasheet memory bandwidth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.results import primary_throughput, read_records


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _row(r) -> list[str]:
    generation = (r.details or {}).get("generation") or ("generate" if r.task == "text-generation" else "-")
    cells = [r.scenario, r.backend, generation, r.precision, str(r.batch_size), r.status + ("" if r.valid else " ⚠")]
    m = r.metrics
    if r.status != "ok" or m is None:
        return cells + ["-"] * 6 + [(r.error or "")[:160].replace("|", "/")]
    tp = getattr(m, "decode_tokens_per_s", None)
    rate = f"{tp:.1f} tok/s (decode)" if tp is not None else "-"
    if tp is None and (primary := primary_throughput(r)) is not None:
        rate = f"{primary[1]:.1f} {primary[0].unit}"
    tpot = getattr(m, "tpot_s", None)
    rf = r.roofline
    phase = rf.phases.get(rf.primary or "") if rf is not None else None

    def bandwidth(source: str) -> float | None:
        bound = phase.bounds.get(source) if phase is not None else None
        return bound.bandwidth_fraction if bound is not None else None

    compile_s = r.cold_costs.get("compile_s")
    note = "; ".join(r.invalid_reasons or [])[:160].replace("|", "/")
    return cells + [
        rate,
        f"{tpot.p50 * 1e3:.2f} ms" if tpot is not None else "-",
        _pct(rf.efficiency("calibrated") if rf else None),
        _pct(bandwidth("calibrated")),
        _pct(bandwidth("datasheet")),
        f"{compile_s:.0f} s" if compile_s else "-",
        note,
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("--skipped", type=Path)
    parser.add_argument("--environment", type=Path)
    args = parser.parse_args()
    header = [
        "scenario",
        "backend",
        "generation",
        "precision",
        "batch",
        "status",
        "throughput",
        "TPOT p50",
        "efficiency (calibrated)",
        "of bandwidth (calibrated)",
        "of bandwidth (datasheet)",
        "compile",
        "note",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for results in sorted(args.runs.glob("*/results.jsonl")):
        lines += ["| " + " | ".join(_row(r)) + " |" for r in read_records(results)]
    if args.environment and args.environment.exists():
        providers = [line for line in args.environment.read_text().splitlines() if line.startswith("onnxruntime ")]
        lines.append("")
        lines += [f"- {line}" for line in providers]
        present = any("TensorrtExecutionProvider" in line for line in providers)
        lines.append(
            f"- TensorRT execution provider: {'present' if present else 'absent'} in this onnxruntime; the "
            "onnxruntime backend has no TensorRT option yet (issue 23, item 3), so no TensorRT figure."
        )
    if args.skipped and args.skipped.exists():
        lines += [f"- {line}" for line in args.skipped.read_text().splitlines() if line.strip()]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
