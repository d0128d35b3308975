"""The onnxruntime backend on CPU, offline, tiny models: every supported precision gives an ok record with
fidelity, the export cache is reused by a second sweep, unsupported points are recorded as such, and a
quantization that did not apply or a provider fallback fails the run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.backends import onnxruntime as ortb
from bench.backends.quantize import QuantizationNotApplied
from bench.results import read_records

from conftest import REPO, covering, run_cli

SWEEP_TIMEOUT_S = 600
pytestmark = covering(SWEEP_TIMEOUT_S, SWEEP_TIMEOUT_S)  # the module fixture runs two sweeps

SCENARIO = """
name: {name}
task: {task}
model:
  name: {model}
device: cpu
matrix:
  backend: [onnxruntime]
  precision: {precision}
  batch_size: [2]
workload: {workload}
measure:
  warmup: 1
  min_iterations: 3
  min_time_s: 0
  timeout_s: 180
"""
GPT2 = dict(task="text-generation", model="tiny-gpt2", workload="{prompt_tokens: 8, new_tokens: 4}")
BERT = dict(task="feature-extraction", model="tiny-bert", workload="{sequence_length: 16}")


def scenario(path: Path, name: str, precision: str, **kw) -> Path:
    path.write_text(textwrap.dedent(SCENARIO.format(name=name, precision=precision, **kw)))
    return path


def sweep(cache: Path, *args: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(cache))
        proc = run_cli("run", *args, timeout=SWEEP_TIMEOUT_S)
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One sweep over every point (cold cache), then a second sweep of one int8-dyn point into another
    run directory with the same cache."""
    tmp = tmp_path_factory.mktemp("ort")
    cache, scenarios = tmp / "cache", tmp / "scenarios"
    scenarios.mkdir()
    gpt2 = scenario(scenarios / "a-gpt2.yaml", "gpt2", "[fp32, fp16, int8, int8-dyn]", **GPT2)
    scenario(scenarios / "b-bert.yaml", "bert", "[fp32]", **BERT)
    first = sweep(cache, str(scenarios), "--out", str(tmp / "first"))
    again = scenario(tmp / "again.yaml", "gpt2", "[int8-dyn]", **GPT2)
    second = sweep(cache, str(again), "--out", str(tmp / "second"), "--no-fidelity")
    return SimpleNamespace(
        tmp=tmp,
        cache=cache,
        gpt2=gpt2,
        first=first,
        second=second,
        records=read_records(tmp / "first" / "results.jsonl"),
        again=read_records(tmp / "second" / "results.jsonl"),
    )


def test_every_supported_precision_runs_with_fidelity(runs):
    assert runs.first.returncode == 0, runs.first.stdout + runs.first.stderr
    ok = {(r.task, r.precision): r for r in runs.records if r.status == "ok"}
    assert set(ok) == {
        ("text-generation", "fp32"),
        ("text-generation", "int8"),
        ("text-generation", "int8-dyn"),
        ("feature-extraction", "fp32"),
    }
    for (task, precision), r in ok.items():
        m, d, cold = r.metrics, r.details, r.cold_costs
        assert m.latency_s.count >= 3 and cold["first_call_s"] > 0
        assert cold["session_s"] > 0 and cold["load_s"] > 0
        assert d["providers"] == ["CPUExecutionProvider"] and d["io_binding"] is False
        assert Path(d["onnx_dir"]).is_relative_to(runs.cache / "onnx")
        assert d["exporter"] == "torch.onnx.export(dynamo=True)" and d["onnx_graphs_run"] == ["model.onnx"]
        assert d["graph_optimization_level"] == "all" and d["intra_op_num_threads"] == 0
        assert r.parameters > 0 and r.weight_bytes > 0
        assert r.fidelity is not None, r.warnings
        if precision == "fp32":
            assert d["export_cache"] == "miss" and cold["export_s"] > 0
            assert d["onnx_files"] == ["model.onnx", "model.onnx.data"]  # the exporter's external weights
            assert "quantize_s" not in cold and r.quantization is None
            assert r.fidelity.cosine_min > 0.9999
            assert r.weight_bytes >= r.parameters * 4 * 0.9  # fp32 initializers (ties and zero biases shared)
        else:  # the int8 runs come after fp32 in the sweep: they quantize the export fp32 made
            assert d["export_cache"] == "hit" and cold["export_s"] == 0.0
            assert d["quantize_cache"] == "miss" and cold["quantize_s"] > 0
            assert d["onnx_files"] == ["model.onnx"]  # the quantized weights are inside the graph
            q = r.quantization
            assert q.quantized_layers > 0 and q.weight_bytes_after < q.weight_bytes_before
            assert r.weight_bytes == q.weight_bytes_after
            assert r.fidelity.cosine_min > 0.9
        if task == "text-generation":
            assert m.ttft_s is not None and r.fidelity.token_agreement is not None
            assert r.fidelity.token_agreement > 0.7
    gpt2 = {p: ok[("text-generation", p)] for p in ("int8", "int8-dyn")}
    # 8 linear layers quantized; the output projection (the tied embedding, transposed) stays fp32
    assert gpt2["int8"].quantization.quantized_layers == 8 and gpt2["int8"].quantization.float_layers_left == 1
    assert gpt2["int8"].details["gemm_rewritten_as_matmul"] == 8 and "MatMulNBits" in gpt2["int8"].quantization.method
    assert gpt2["int8-dyn"].quantization.quantized_layers == 8
    assert "quantize_dynamic" in gpt2["int8-dyn"].quantization.method


def test_unsupported_precision_is_recorded_with_its_reason(runs):
    (r,) = [r for r in runs.records if r.status == "unsupported"]
    assert r.precision == "fp16" and r.metrics is None
    assert "does not support fp16" in r.error and "CPUExecutionProvider implements few operators in fp16" in r.error


def test_second_sweep_reuses_the_export_and_quantization_cache(runs):
    assert runs.second.returncode == 0, runs.second.stdout + runs.second.stderr
    (r,) = runs.again
    first = next(x for x in runs.records if x.task == "text-generation" and x.precision == "int8-dyn")
    assert r.status == "ok" and r.fidelity is None
    assert r.details["export_cache"] == "hit" and r.details["quantize_cache"] == "hit"
    assert r.cold_costs["export_s"] == 0.0 and r.cold_costs["quantize_s"] == 0.0
    assert r.details["onnx_dir"] == first.details["onnx_dir"]
    assert r.quantization == first.quantization
    # one export per model + one entry per quantization of gpt2, each complete, no temporary directory left
    entries = sorted(p.name for p in (runs.cache / "onnx").iterdir())
    assert len(entries) == 2 + 2 and not [e for e in entries if e.startswith(".tmp")]
    assert all((runs.cache / "onnx" / e / ortb.META_FILE).is_file() for e in entries)


def test_provider_fallback_fails_the_run(runs):
    """What onnxruntime-gpu does when the CUDA libraries do not load: it lists CUDAExecutionProvider as
    available, and a session asked for it gets CPUExecutionProvider with only a warning. Simulated in a
    worker process on this CPU build: the run asks for CUDAExecutionProvider and the Python-level list of
    available providers (which the backend consults) claims it; the session itself is created
    by onnxruntime unchanged and really falls back. The unchanged check must fail the run."""
    from bench.scenario import load_scenario

    spec = load_scenario(runs.gpt2).run_specs(device="cpu")[0]
    assert spec.precision == "fp32"
    spec_path, result_path = runs.tmp / "fallback.spec.json", runs.tmp / "fallback.result.json"
    spec_path.write_text(spec.model_dump_json())
    harness = (
        "import sys; import bench.backends.onnxruntime.providers as b; "
        "b.requested_providers = lambda device, tensorrt=None: [('CUDAExecutionProvider', {'device_id': 0})]; "
        "import onnxruntime as ort; claimed = ort.get_available_providers() + ['CUDAExecutionProvider']; "
        "ort.get_available_providers = lambda: claimed; "
        "from bench.worker import main; sys.exit(main(sys.argv[1:]))"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", BENCH_CACHE_DIR=str(runs.cache))
    proc = subprocess.run(
        [sys.executable, "-c", harness, str(spec_path), str(result_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(result_path.read_text())  # the worker hands back a list of records
    assert record["status"] == "failed" and record["metrics"] is None
    assert record["error"].startswith(
        "ProviderFallback: onnxruntime fell back to CPUExecutionProvider: CUDAExecutionProvider unavailable"
    ), record["error"]


# --- units: no model, no subprocess -----------------------------------------------------------------

CUDA = [("CUDAExecutionProvider", {"device_id": 1})]


def test_provider_check():
    ortb.check_providers(
        CUDA,
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        {"CUDAExecutionProvider": {"device_id": "1"}, "CPUExecutionProvider": {}},
        "build",
    )
    with pytest.raises(
        ortb.ProviderFallback,
        match="fell back to CPUExecutionProvider: CUDAExecutionProvider "
        r"unavailable \(build\)",
    ):
        ortb.check_providers(CUDA, ["CPUExecutionProvider"], {"CPUExecutionProvider": {}}, "build")
    with pytest.raises(ortb.ProviderFallback, match="device_id=0, not 1"):
        ortb.check_providers(CUDA, ["CUDAExecutionProvider"], {"CUDAExecutionProvider": {"device_id": "0"}}, "b")
    with pytest.raises(ortb.ProviderFallback, match="install onnxruntime-gpu"):
        ortb.check_runtime(SimpleNamespace(type="cuda"), ["CPUExecutionProvider"], "build")
    ortb.check_runtime(SimpleNamespace(type="cpu"), ["CPUExecutionProvider"], "build")


def test_provider_monitor_catches_a_later_fallback():
    session = SimpleNamespace(
        get_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        get_provider_options=lambda: {"CUDAExecutionProvider": {"device_id": "1"}},
    )
    unet = SimpleNamespace(get_providers=session.get_providers, get_provider_options=session.get_provider_options)
    monitor = ortb.ProviderMonitor([session, unet], CUDA, "build")  # a pipeline has a session per graph
    assert monitor.cold_metrics() == {}
    unet.get_providers = lambda: ["CPUExecutionProvider"]  # onnxruntime retried a failed run on the CPU
    with pytest.raises(ortb.ProviderFallback):
        monitor.end_measured()


def _export_entry(cache: Path, weight_is_constant: bool) -> Path:
    """A cache entry as `export` leaves it, holding y = x @ W (W an initializer) or y = x @ z (no weight)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    if weight_is_constant:
        w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), "W")
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g", [x], [y], [w])
    else:
        z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [64, 64])
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "z"], ["y"])], "g", [x, z], [y])
    entry = cache / "onnx" / f"export{int(weight_is_constant)}"
    entry.mkdir(parents=True)
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), entry / "model.onnx"
    )
    (entry / ortb.META_FILE).write_text(json.dumps({"key": entry.name}))
    return entry


@pytest.mark.parametrize("precision", ["int8", "int8-dyn"])
def test_quantization_that_did_not_apply_fails_and_caches_nothing(tmp_path, monkeypatch, precision):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    source = _export_entry(tmp_path, weight_is_constant=False)
    with pytest.raises(QuantizationNotApplied, match="quantized none of the 0 linear layers"):
        ortb.quantize(source, precision)
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [source.name]  # no entry, no .tmp-*


@pytest.mark.parametrize("precision", ["int8", "int8-dyn"])
def test_quantization_verification_counts_layers_and_bytes(tmp_path, monkeypatch, precision):
    import onnx

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    source = _export_entry(tmp_path, weight_is_constant=True)
    entry, status, meta = ortb.quantize(source, precision)
    q = meta["quantization"]
    assert status == "miss" and q["quantized_layers"] == 1 and q["float_layers_left"] == 0
    assert q["weight_bytes_before"] == 64 * 64 * 4 and q["weight_bytes_after"] < 64 * 64 * 2
    ops = {n.op_type for n in onnx.load(entry / "model.onnx").graph.node}
    assert ops >= ({"MatMulNBits"} if precision == "int8" else {"DynamicQuantizeLinear", "MatMulInteger"})
    assert ortb.quantize(source, precision)[1] == "hit"
    before = onnx.load(source / "model.onnx")
    with pytest.raises(QuantizationNotApplied, match="quantized none of the 1 linear layers"):
        ortb.verify_quantization(before, before, "int8", "a quantizer that did nothing")


def test_cache_entry_appears_complete_or_not_at_all(tmp_path):
    entry = tmp_path / "onnx" / "abc"
    stale = tmp_path / "onnx" / ".tmp-abc-999999999-x"  # a killed run's leftovers (no such pid)
    stale.mkdir(parents=True)

    def broken(out: Path):
        (out / "model.onnx").write_text("half")
        raise RuntimeError("exporter died")

    with pytest.raises(RuntimeError, match="exporter died"):
        ortb.cached(entry, broken)
    assert list((tmp_path / "onnx").iterdir()) == []
    assert ortb.cached(entry, lambda out: {"n": 1}) == ("miss", {"n": 1})
    assert ortb.cached(entry, lambda out: {"n": 2}) == ("hit", {"n": 1})


def test_unsupported_reasons_say_why():
    reason = ortb.OnnxRuntimeBackend.unsupported_reason("text-generation", "int8-dyn", "cuda")
    assert "does not support int8-dyn" in reason and "CPU kernels" in reason
    assert ortb.OnnxRuntimeBackend.unsupported_reason("feature-extraction", "fp16", "cuda") is None
    assert ortb.OnnxRuntimeBackend.unsupported_reason("text-to-image", "fp32", "cpu") is None
    assert ortb.OnnxRuntimeBackend.unsupported_reason("text-to-image", "fp16", "cuda") is None
    reason = ortb.OnnxRuntimeBackend.unsupported_reason("text-to-image", "int8", "cpu")
    assert "does not support int8" in reason and "UNet graph" in reason
    reason = ortb.OnnxRuntimeBackend.unsupported_reason("text-to-image", "fp16", "cpu")
    assert "implements few operators in fp16" in reason  # the device's reason still applies
