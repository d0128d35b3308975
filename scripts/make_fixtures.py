"""Regenerate the recorded runs tests/test_report.py reads, in the current record format: one command,
`python scripts/make_fixtures.py` (from any directory; CPU, offline, a few minutes).

It runs `bench run tests/fixtures/scenarios` twice, as tests/fixtures/README.md describes (two repeats with
2 threads; one repeat with OMP_NUM_THREADS=1), and keeps each run's results.jsonl and environment.json under
tests/fixtures/cpu-2threads and tests/fixtures/cpu-1thread. The only failed records allowed are those of
the missing-weights scenario (that failure is the fixture); anything else failing stops it, fixtures untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
RUNS = {"cpu-2threads": (2, {"OMP_NUM_THREADS": "2"}), "cpu-1thread": (1, {"OMP_NUM_THREADS": "1"})}
EXPECTED_FAILURE = "missing-weights"  # scenario whose records must fail (pretrained weights absent)


def bench_command() -> list[str]:
    # the console script, so environment.json's "command" reads "bench run ..." as a user's would
    script = Path(sys.executable).with_name("bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bench.cli"]


def record_one(name: str, repeats: int, env_extra: dict[str, str], tmp: Path) -> Path:
    out = tmp / name
    # A fresh cache directory: no stored calibration of this machine (so no run-time roofline in the records,
    # whether or not `bench calibrate` ran here before) and no warm compile caches.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "BENCH_CACHE_DIR": str(tmp / "cache"),
        **env_extra,
    }
    cmd = [*bench_command(), "run", "tests/fixtures/scenarios", "--repeats", str(repeats), "--out", str(out)]
    print("+", " ".join(f"{k}={v}" for k, v in env_extra.items()), " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    unexpected = [
        (r["scenario"], r["backend"], r["precision"], r["batch_size"], r["status"], r.get("error"))
        for r in records
        if (r["status"] == "failed") != (r["scenario"] == EXPECTED_FAILURE) or r["status"] == "timeout"
    ]
    if proc.returncode not in (0, 1) or unexpected:  # exit 1: the expected failed point
        sys.exit(f"{name}: bench run exited {proc.returncode}; unexpected records: {unexpected}")
    return out


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aigc-bench-fixtures-") as tmp:
        made = {name: record_one(name, repeats, env, Path(tmp)) for name, (repeats, env) in RUNS.items()}
        for name, out in made.items():  # only once every run succeeded
            dest = FIXTURES / name
            dest.mkdir(exist_ok=True)
            for f in ("results.jsonl", "environment.json"):
                shutil.copyfile(out / f, dest / f)
            print(f"wrote {dest.relative_to(REPO)}/{{results.jsonl,environment.json}}")


if __name__ == "__main__":
    main()
