"""The same tiny sweep through the local executor and through a local 3-node Ray cluster (ray.cluster_utils):
wall time of each, Ray's per-point overhead (details.ray: submit -> result on the driver minus the worker
process's own time), and whether both gave the same set of runs and statuses. Prints markdown.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python scripts/ray_vs_local.py [--out DIR] [--batches 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """name: ray-vs-local
task: text-generation
model:
  name: tiny-gpt2
device: cpu
matrix:
  backend: [eager]
  precision: [fp32]
  batch_size: [{batches}]
workload:
  prompt_tokens: 8
  new_tokens: 4
measure:
  warmup: 1
  min_iterations: 10
  min_time_s: 0.0
  timeout_s: 600
"""


def bench(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"bench run {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    from ray.cluster_utils import Cluster

    from bench.results import read_records

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="ray-vs-local-")))
    ap.add_argument("--batches", default="1, 2, 4")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scenario = args.out / "scenario.yaml"
    scenario.write_text(SCENARIO.format(batches=args.batches))
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 100 * 2**20},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    start_s = time.perf_counter() - t0
    try:
        local_s = bench(str(scenario), "--out", str(args.out / "local"), "--no-fidelity")
        ray_s = bench(
            str(scenario),
            "--out",
            str(args.out / "ray"),
            "--no-fidelity",
            "--executor",
            "ray",
            "--address",
            cluster.address,
        )
    finally:
        cluster.shutdown()
    local = read_records(args.out / "local" / "results.jsonl")
    on_ray = read_records(args.out / "ray" / "results.jsonl")
    same = {(r.run_id, r.status) for r in local} == {(r.run_id, r.status) for r in on_ray}
    print(f"- cluster start (3 logical nodes): {start_s:.1f} s")
    print(f"- `bench run` wall, local executor: {local_s:.1f} s; Ray executor: {ray_s:.1f} s")
    print(f"- same runs and statuses: {'yes' if same else 'NO'} ({len(local)} local, {len(on_ray)} Ray records)")
    print(f"- nodes used: {len({r.details['node']['ray_node_id'] for r in on_ray})}\n")
    print(
        "| point | worker duration_s local | worker duration_s Ray | Ray driver_s | Ray task_s | worker_s "
        "| overhead (driver_s − worker_s) |"
    )
    print("|---|---|---|---|---|---|---|")
    by_id = {r.run_id: r for r in local}
    overheads = []
    for r in sorted(on_ray, key=lambda r: r.batch_size):
        t = r.details["ray"]
        overheads.append(t["driver_s"] - t["worker_s"])
        print(
            f"| bs{r.batch_size} | {by_id[r.run_id].duration_s:.1f} | {r.duration_s:.1f} | {t['driver_s']:.1f} "
            f"| {t['task_s']:.1f} | {t['worker_s']:.1f} | {overheads[-1]:.2f} |"
        )
    print(f"\nmedian per-point overhead: {statistics.median(overheads):.2f} s; results under {args.out}")


if __name__ == "__main__":
    main()
