"""The CLI. Every bad-input case: exit code 2, one line naming file and field, no traceback,
nothing written."""

import pytest

from conftest import run_cli

GOOD = {
    "name": "ok",
    "task": "text-generation",
    "model": "{name: tiny-gpt2}",
    "device": "cpu",
    "matrix": "{backend: [eager], precision: [fp32], batch_size: [1]}",
    "workload": "{prompt_tokens: 8, new_tokens: 4}",
}


def scenario(**override):
    fields = {**GOOD, **override}
    return "\n".join(f"{k}: {v}" for k, v in fields.items() if v is not None) + "\n"


CASES = {
    # id: (file text or None for a missing file, expected field (or None), expected words)
    "malformed-yaml": ("name: [unclosed\ntask: x\n", None, "malformed YAML at line"),
    "empty-file": ("", None, "empty scenario file"),
    "not-a-mapping": ("- a\n- b\n", None, "must be a mapping"),
    "python-object-tag": ("name: !!python/object/apply:os.system ['echo hi']\n", None, "malformed YAML"),
    "missing-file": (None, None, "no such file"),
    "unknown-top-key": (scenario(colour="blue"), "colour", "unknown key"),
    "unknown-nested-key": (scenario(measure="{warmups: 2}"), "measure.warmups", "unknown key"),
    "missing-name": (scenario(name=None), "name", "required key is missing"),
    "wrong-type": (scenario(measure="{min_iterations: many}"), "measure.min_iterations", "integer"),
    "unknown-task": (scenario(task="summarize"), "task", "unknown task 'summarize'"),
    "unknown-backend": (scenario(matrix="{backend: [tensorrt]}"), "matrix.backend", "unknown backend 'tensorrt'"),
    "unknown-precision": (scenario(matrix="{precision: [fp32, fp64]}"), "matrix.precision[1]", "fp32"),
    "unknown-device": (scenario(device="tpu"), "device", "should match pattern"),
    "unknown-model": (scenario(model="{name: gpt5}"), "model.name", "unknown model 'gpt5'"),
    "hub-id-not-cached": (scenario(model="{name: nobody/nothing-here}"), "model.name", "not in the local hub cache"),
    "wrong-task-model": (scenario(model="{name: tiny-bert}"), "model.name", "not a text-generation"),
    "zero-batch": (scenario(matrix="{batch_size: [1, 0]}"), "matrix.batch_size[1]", "greater than 0"),
    "negative-tokens": (
        scenario(workload="{prompt_tokens: -3, new_tokens: 4}"),
        "workload.prompt_tokens",
        "greater than 0",
    ),
    "unknown-workload-key": (scenario(workload="{prompt_tokens: 8, tokens: 4}"), "workload.tokens", "unknown key"),
    "too-long": (
        scenario(workload="{prompt_tokens: 500, new_tokens: 100}"),
        "workload.prompt_tokens",
        "exceeds the model's maximum positions (512)",
    ),
    "empty-after-exclude": (scenario(exclude="[{precision: fp32}]"), "exclude", "removes every point"),
    "options-for-absent-backend": (
        scenario(backend_options="{other: {}}"),
        "backend_options.other",
        "which the matrix does not run",
    ),
    "bad-name": (scenario(name="'has spaces'"), "name", "should match pattern"),
    "duplicate-top-key": (
        scenario() + "device: cuda\n",
        "device",
        "duplicate key 'device' at line 7 (first at line 4)",
    ),
    "duplicate-nested-key": (
        scenario(measure="\n  warmup: 1\n  min_iterations: 3\n  warmup: 2"),
        "measure.warmup",
        "duplicate key 'warmup' at line 10 (first at line 8)",
    ),
    "infinite-timeout": (scenario(measure="{timeout_s: .inf}"), "measure.timeout_s", "non-finite number '.inf'"),
    "overflowing-exponent": (scenario(measure="{timeout_s: 1e999}"), "measure.timeout_s", "non-finite number '1e999'"),
    "nan-min-time": (scenario(measure="{min_time_s: .nan}"), "measure.min_time_s", "non-finite number"),
    "huge-batch": (
        scenario(matrix="{batch_size: [100000000000000000000]}"),
        "matrix.batch_size[0]",
        "beyond any sane limit",
    ),
    "batch-too-large": (
        scenario(matrix="{batch_size: [1000000]}"),
        "matrix.batch_size[0]",
        "less than or equal to 65536",
    ),
    "week-long-timeout": (scenario(measure="{timeout_s: 1e9}"), "measure.timeout_s", "less than or equal to"),
    "string-for-int": (
        scenario(workload="{prompt_tokens: '8', new_tokens: 4}"),
        "workload.prompt_tokens",
        "valid integer",
    ),
    "negative-seed": (scenario(measure="{seed: -1}"), "measure.seed", "greater than or equal to 0"),
}


def check_error(proc, path, field, words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith(f"error: {path}"), line
    if field:
        assert f": {field}: " in line, line
    assert words in line, line


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario_run(case, tmp_path):
    text, field, words = CASES[case]
    path = tmp_path / f"{case}.yaml"
    if text is not None:
        path.write_text(text)
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out))
    check_error(proc, path, field, words)
    assert not out.exists(), "nothing may be written for an invalid scenario"


def test_validate_reports_each_file(tmp_path):
    good = tmp_path / "a-good.yaml"
    good.write_text(scenario())
    bad = tmp_path / "b-bad.yaml"
    bad.write_text(scenario(task="nope"))
    proc = run_cli("validate", str(tmp_path))
    assert proc.returncode == 2
    assert f"ok: {good}" in proc.stdout
    assert f"error: {bad}: task: unknown task 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_ok(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(scenario())
    proc = run_cli("validate", str(good))
    assert proc.returncode == 0 and "1 point(s)" in proc.stdout


def test_empty_directory(tmp_path):
    proc = run_cli("run", str(tmp_path))
    check_error(proc, tmp_path, None, "holds no scenario files")


def test_duplicate_scenario_names(tmp_path):
    (tmp_path / "a.yaml").write_text(scenario())
    (tmp_path / "b.yaml").write_text(scenario())
    proc = run_cli("run", str(tmp_path), "--out", str(tmp_path / "out"))
    check_error(proc, tmp_path / "b.yaml", "name", "already used by")


def test_cuda_requested_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "c.yaml"
    path.write_text(scenario(device="cuda"))
    proc = run_cli("run", str(path), "--out", str(tmp_path / "out"))
    check_error(proc, path, "device", "torch sees no CUDA device")
    assert not (tmp_path / "out").exists()


def test_bad_device_option(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(scenario())
    proc = run_cli("run", str(path), "--device", "gpu")
    check_error(proc, "--device", None, "is not auto, cpu, cuda or cuda:N")


def test_existing_results_without_resume(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(scenario())
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"x": 1}\n')
    proc = run_cli("run", str(path), "--out", str(out))
    check_error(proc, "--out", None, "pass --resume")


def test_list_shows_bundled_models_and_scenarios():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    assert "124.4M" in proc.stdout and "6,738.4M" in proc.stdout  # gpt2 and llama-2-7b, counted from configs
    assert "cpu/gpt2-decode.yaml" in proc.stdout  # a bundled suite (bench/suites/)


def test_capabilities_command():
    proc = run_cli("capabilities")
    assert proc.returncode == 0
    assert "| eager | text-generation | cpu | yes | yes | yes | yes | yes |" in proc.stdout
    assert "| compile | feature-extraction | cuda | yes | yes | yes | yes | yes |" in proc.stdout
    assert "| onnxruntime | text-generation | cpu | yes | - | - | yes | yes |" in proc.stdout


@pytest.mark.parametrize("args", [["validate"], ["run", "--repeats", "0", "x.yaml"], ["nonsense"]])
def test_usage_errors_exit_2_without_traceback(args):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


def _tiny(tmp_path, name="t.yaml", **override):
    path = tmp_path / name
    measure = "{warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 120}"
    path.write_text(scenario(**{"measure": measure, **override}))
    return path


def test_second_sweep_into_same_directory_is_refused(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from bench.results import read_records

    from conftest import REPO

    # the first sweep measures for 20 s, so it still holds the lock when the second CLI has started (a few
    # seconds of imports; a 0-second sweep finished first on a busy machine and the second resumed it, exit 0)
    path = _tiny(tmp_path, measure="{warmup: 1, min_iterations: 3, min_time_s: 20, timeout_s: 120}")
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--out", str(out), "--no-fidelity"],
        cwd=REPO,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((out / ".lock").exists() and (out / ".lock").read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli("run", str(path), "--out", str(out), "--resume")
    check_error(second, "--out", None, f"{out} is being written by another sweep (pid {first.pid})")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert len(read_records(out / "results.jsonl")) == 1  # each run once


def test_resume_refuses_other_measure_settings_and_retry_failed_runs_again(tmp_path):
    import torch

    from bench import models
    from bench.results import read_records
    from bench.workloads.text_generation import TextGeneration

    from conftest import REPO

    model_dir = tmp_path / "model"  # a checkpoint directory whose weights are not there yet: a run-time failure
    model_dir.mkdir()
    (model_dir / "config.json").write_text((REPO / "bench/models/configs/tiny-gpt2.json").read_text())
    path, out = _tiny(tmp_path, model=f"{{name: {model_dir}, weights: pretrained}}"), tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), "--no-fidelity")
    assert proc.returncode == 1, proc.stderr
    (failed,) = read_records(out / "results.jsonl")
    assert failed.status == "failed" and failed.measure["warmup"] == 1

    other = _tiny(
        tmp_path,
        "other.yaml",
        model=f"{{name: {model_dir}, weights: pretrained}}",
        measure="{warmup: 2, min_iterations: 3, min_time_s: 0, timeout_s: 120}",
    )
    proc = run_cli("run", str(other), "--out", str(out), "--resume", "--no-fidelity")
    check_error(proc, out / "results.jsonl", None, "measure.warmup: recorded 1, scenario 2")

    longer = _tiny(
        tmp_path,
        "longer.yaml",
        model=f"{{name: {model_dir}, weights: pretrained}}",
        measure="{warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 999}",
    )
    proc = run_cli("run", str(longer), "--out", str(out), "--resume", "--no-fidelity")  # a time limit measures nothing
    assert proc.returncode == 0 and "1 run(s) already recorded" in proc.stderr, proc.stderr

    built = models.build(models.resolve("tiny-gpt2"), TextGeneration.model_class(), torch.float32, "cpu", 0)
    built.save_pretrained(model_dir)  # the weights arrive
    proc = run_cli("run", str(path), "--out", str(out), "--retry-failed", "--no-fidelity")
    assert proc.returncode == 0, proc.stderr
    assert "retry: moved 1 failed/timed-out record(s) to" in proc.stderr
    (record,) = read_records(out / "results.jsonl")
    assert record.status == "ok" and record.run_id == failed.run_id
    (side,) = out.glob("results.retried-*.jsonl")
    assert [r.status for r in read_records(side)] == ["failed"]
