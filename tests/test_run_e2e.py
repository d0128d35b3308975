"""Full sweeps through the CLI on tiny models: records, a failing point, a timeout, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from bench.results import read_records

from conftest import REPO, TINY, run_cli, tiny_scenario
from shared_sweeps import shared_sweep

tiny_sweep = shared_sweep(  # run with the other shared sweeps (tests/shared_sweeps.py)
    "tiny_sweep",
    {
        "t.yaml": TINY.format(
            name="tiny", model="tiny-gpt2", precision="[fp32, bf16]", batch="[1, 2]", iters=5, min_time=0.0, timeout=120
        )
    },
    timeout_s=600,
    workers=6,  # four points, two references
)


def test_tiny_sweep_records(tiny_sweep):
    out = tiny_sweep.check().out
    wall_s = tiny_sweep.wall_s  # a second clock: the test's own, around the whole sweep's CLI process
    records = read_records(out / "results.jsonl")
    assert len(records) == 4
    # Every measured call of every point ran inside the sweep, so their sum is below the test's wall time.
    assert sum(sum(r.metrics.latency_s.samples) for r in records) < wall_s
    ok = [r for r in records if r.status == "ok"]
    assert len(ok) == 4
    for r in ok:
        m = r.metrics
        assert r.workload == {"prompt_tokens": 8, "new_tokens": 4} and r.device == "cpu"
        assert m.latency_s.count >= 5 and len(m.latency_s.samples) == m.latency_s.count
        assert m.latency_s.p50 <= m.latency_s.p99 <= m.latency_s.max
        assert all(t < lat for t, lat in zip(m.ttft_s.samples, m.latency_s.samples))
        assert m.ttft_s.mean < m.latency_s.mean
        # TPOT's formula is checked on hand-made calls (test_models_workload.py); here: one per call, within it
        assert m.tpot_s.count == m.latency_s.count
        assert all(0 < tpot < lat for tpot, lat in zip(m.tpot_s.samples, m.latency_s.samples))
        assert m.itl_s.count == 3 * m.latency_s.count  # new_tokens - 1 gaps per call
        # batch × 4 tokens per call: at least that many tokens per second of the test's wall clock, and at
        # most what the fastest call reached
        tokens = r.batch_size * 4
        assert tokens * m.latency_s.count / wall_s < m.output_tokens_per_s <= tokens / m.latency_s.min
        assert r.memory.host_rss_peak_bytes > 0 and r.memory.host_rss_measured_peak_bytes > 0
        assert r.cold_costs["load_s"] > 0 and r.cold_costs["first_call_s"] > 0 and r.warmup_calls == 1
        assert r.details["compute_dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[r.precision]
        assert r.fidelity is not None and r.fidelity.cosine_min > 0.99
        assert r.valid == (r.invalid_reasons == [])  # invalid exactly when a reason says why
    env = json.loads((out / "environment.json").read_text())
    assert env["cpu"]["logical_cores"] >= 1 and env["libraries"]["torch"].startswith("2.")
    assert "timestamp" in env and "git_commit" in env
    assert (out / "summary.md").read_text().count("| tiny |") == 4


def test_failing_point_recorded_and_sweep_continues(tmp_path):
    import torch

    from bench import models
    from bench.workloads.text_generation import TextGeneration

    # A model directory with a config but no weights: a valid scenario that fails at run time.
    model_dir = tmp_path / "noweights"
    model_dir.mkdir()
    (model_dir / "config.json").write_text((REPO / "bench/models/configs/tiny-gpt2.json").read_text())
    bad = tiny_scenario(tmp_path / "a-bad.yaml", name="bad", model=str(model_dir))
    bad.write_text(bad.read_text().replace(f"name: {model_dir}", f"name: {model_dir}\n  weights: pretrained"))
    # Real saved weights in a local directory: `weights: pretrained` loads them.
    saved = tmp_path / "saved"
    models.build(models.resolve("tiny-llama"), TextGeneration.model_class(), torch.float32, "cpu", 7).save_pretrained(
        saved
    )
    good = tiny_scenario(tmp_path / "b-good.yaml", name="good", model=str(saved))
    good.write_text(good.read_text().replace(f"name: {saved}", f"name: {saved}\n  weights: pretrained"))
    out = tmp_path / "out"
    proc = run_cli("run", str(tmp_path), "--out", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = read_records(out / "results.jsonl")
    assert [(r.scenario, r.status) for r in records] == [("bad", "failed"), ("good", "ok")]
    assert "pretrained weights" in records[0].error and "log:" in records[0].error
    assert "Traceback" in (out / "logs" / f"{records[0].run_id}.log").read_text()
    assert records[1].weights == "pretrained" and records[1].parameters == 223552


def test_timeout_kills_the_run(tmp_path):
    scen = tiny_scenario(tmp_path / "slow.yaml", iters=100000, min_time=120, timeout=4)
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = run_cli("run", str(scen), "--out", str(out))
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1
    (record,) = read_records(out / "results.jsonl")
    assert record.status == "timeout" and "timeout_s=4" in record.error and record.metrics is None


def _workers_of(out_dir):
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "bench.worker" in cmd and str(out_dir) in cmd:
            found.append(p)
    return found


def test_resume_after_killed_sweep(tmp_path):
    scen = tiny_scenario(tmp_path / "r.yaml", name="resume", batch="[1, 2, 3]", iters=3)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    sweep = subprocess.Popen(
        # no fidelity: references across a kill and a resume are test_faults.py's (three references here would
        # only add worker processes)
        [sys.executable, "-m", "bench.cli", "run", str(scen), "--out", str(out), "--no-fidelity"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
        time.sleep(0.1)
    sweep.send_signal(signal.SIGKILL)  # no clean-up chance for the runner
    sweep.wait()
    first = read_records(results)
    assert 1 <= len(first) < 3
    deadline = time.monotonic() + 15  # the orphaned worker goes with its parent
    while _workers_of(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers_of(out) == []

    proc = run_cli("run", str(scen), "--out", str(out), "--resume", "--no-fidelity")
    assert proc.returncode == 0, proc.stderr
    assert f"resume: {len(first)} run(s) already recorded" in proc.stderr
    records = read_records(results)
    assert len(records) == 3 and len({r.run_id for r in records}) == 3
    assert [r.run_id for r in records[: len(first)]] == [r.run_id for r in first]
    assert sorted(r.batch_size for r in records) == [1, 2, 3]
