"""Fault tests on real sweeps of a tiny model: the runner killed (-9) at several points then resumed, a record
write that fails part-way (RLIMIT_FSIZE on the runner), a worker that runs out of memory (RLIMIT_AS)."""

import os
import resource
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.results import read_records
from bench.scenario import load_scenario

from conftest import REPO, run_cli, tiny_scenario


def start_sweep(*args, preexec_fn=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )


def kill_when(proc, condition, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no clean-up chance for the runner
    proc.wait()


def workers_of(out_dir):
    cmdlines = ((p, " ".join(p.info["cmdline"] or [])) for p in psutil.process_iter(["cmdline"]))
    return [p for p, cmd in cmdlines if "bench.worker" in cmd and str(out_dir) in cmd]


def lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


pytestmark = pytest.mark.timeout(900)  # real sweeps: a few minutes on a busy 2-core machine


def test_kill_at_several_points_then_resume(tmp_path):
    # two points of one reference key (one batch size): a kill while the reference is made, then while a point runs
    scen = tiny_scenario(tmp_path / "k.yaml", name="kill", precision="[fp32, bf16]", iters=3)
    planned = {s.run_id for s in load_scenario(scen).run_specs(device="cpu")}
    out = tmp_path / "out"
    results, refs, logs = out / "results.jsonl", out / "references", out / "logs"

    def first_log():
        return logs.is_dir() and any(p.suffix == ".log" and not p.name.startswith("reference") for p in logs.iterdir())

    points = [
        ("making the fp32 reference", [], lambda: refs.is_dir() and any(refs.glob("*.spec.json"))),
        ("a worker in flight, nothing recorded", ["--resume"], lambda: first_log() and lines(results) == 0),
        ("one run recorded", ["--resume"], lambda: lines(results) >= 1),
    ]
    for what, extra, condition in points:
        kill_when(start_sweep(str(scen), "--out", str(out), *extra), condition, what)
        deadline = time.monotonic() + 15  # an orphaned worker goes with its parent
        while workers_of(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert workers_of(out) == [], what
        read_records(results) if results.exists() else None  # never a malformed line after a kill
    proc = run_cli("run", str(scen), "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    records = read_records(results)
    assert sorted(r.run_id for r in records) == sorted(planned)  # complete, each run once
    assert all(r.status == "ok" and r.fidelity is not None for r in records)

    # A record cut short while being written: --resume moves it aside, says so and measures that run again.
    whole = results.read_bytes()
    cut = whole[: len(whole) - len(whole.split(b"\n")[-2]) // 2 - 1]
    results.write_bytes(cut)
    proc = run_cli("run", str(scen), "--out", str(out), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "was cut short; moved 1 line(s) to" in proc.stderr
    (side,) = out.glob("results.truncated-*.jsonl")
    assert side.read_bytes() == cut[cut.rindex(b"\n", 0, len(cut)) + 1 :] + b"\n"
    again = read_records(results)
    assert sorted(r.run_id for r in again) == sorted(planned)
    assert again[0].run_id == records[0].run_id


def test_write_failing_part_way_exits_1_and_leaves_complete_records(tmp_path):
    scen = tiny_scenario(tmp_path / "w.yaml", name="write", batch="[1, 2]", iters=3)
    one = tmp_path / "one"
    assert (
        run_cli(
            "run", str(tiny_scenario(tmp_path / "o.yaml", name="write", iters=3)), "--out", str(one), "--no-fidelity"
        ).returncode
        == 0
    )
    size = (one / "results.jsonl").stat().st_size  # one record of this shape
    limit = int(size * 1.5)  # room for the first record, not for the second

    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out"
    proc = start_sweep(str(scen), "--out", str(out), "--no-fidelity", preexec_fn=preexec)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr
    assert "cannot write a record to" in stderr and "File too large" in stderr and "Traceback" not in stderr
    (first,) = read_records(out / "results.jsonl")  # nothing but complete lines
    assert (out / "results.jsonl").read_bytes().endswith(b"\n")
    proc = run_cli("run", str(scen), "--out", str(out), "--resume", "--no-fidelity")
    assert proc.returncode == 0, proc.stderr
    records = read_records(out / "results.jsonl")
    assert records[0].run_id == first.run_id and sorted(r.batch_size for r in records) == [1, 2]


def test_out_of_memory_point_is_recorded_and_sweep_goes_on(tmp_path):
    scenarios = tmp_path / "scen"
    scenarios.mkdir()
    big = tiny_scenario(scenarios / "a-big.yaml", name="big", batch="[65536]", iters=3)
    big.write_text(big.read_text().replace("prompt_tokens: 8", "prompt_tokens: 256"))  # 4 GiB of activations
    tiny_scenario(scenarios / "b-small.yaml", name="small", iters=3)
    out = tmp_path / "out"
    proc = run_cli("run", str(scenarios), "--out", str(out), "--no-fidelity", "--worker-memory-limit", "3G")
    assert proc.returncode == 1, proc.stderr
    big_record, small_record = read_records(out / "results.jsonl")
    assert (big_record.scenario, big_record.status) == ("big", "failed")
    assert big_record.error.startswith("out of memory:") and big_record.metrics is None
    assert (small_record.scenario, small_record.status) == ("small", "ok")
