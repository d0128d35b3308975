"""Text to image on the tiny Stable Diffusion-shaped pipeline: records, per-step timing, fidelity, int8
of the UNet, torch.compile of the UNet, and ONNX Runtime (three exported graphs). CPU, offline, random
weights."""

from __future__ import annotations

import textwrap

import pytest

from bench.results import read_records

from conftest import run_cli
from shared_sweeps import shared_sweep

SWEEP_TIMEOUT_S = 600

tiny_sd = shared_sweep(  # run with the other shared sweeps (tests/shared_sweeps.py)
    "tiny_sd",
    {
        "s.yaml": textwrap.dedent("""
        name: tiny-sd
        task: text-to-image
        model: {name: tiny-sd}
        device: cpu
        matrix:
          backend: [eager, compile, onnxruntime]
          precision: [fp32, int8]
          batch_size: 2
        exclude:
          - {backend: compile, precision: int8}
        backend_options:
          compile: {compiler: aot_eager}
        workload: {height: 32, width: 32, num_inference_steps: 3, guidance_scale: 7.5}
        measure: {warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 180, max_cv: 10.0}
        """)
    },
    timeout_s=SWEEP_TIMEOUT_S,
    workers=7,  # three exported graphs, a compiled UNet, a 4-step pipeline per call
)


@pytest.fixture(scope="module")
def sd_run(tiny_sd):
    """(records by (backend, precision), the test's own wall time around the sweep's CLI process)."""
    run = tiny_sd.check().out
    return {(r.backend, r.precision): r for r in read_records(run / "results.jsonl")}, tiny_sd.wall_s


@pytest.fixture(scope="module")
def sd_sweep(sd_run):
    return sd_run[0]


MEASURED = {("eager", "fp32"), ("eager", "int8"), ("compile", "fp32"), ("onnxruntime", "fp32")}


def test_pipeline_records(sd_run):
    sd_sweep, wall_s = sd_run
    assert set(sd_sweep) == MEASURED | {("onnxruntime", "int8")}
    for (backend, precision), r in sd_sweep.items():
        if (backend, precision) not in MEASURED:
            continue
        assert r.status == "ok", (backend, precision, r.error)
        m = r.metrics
        steps = r.details["unet_steps_per_call"]  # PNDM (PLMS) runs one more UNet step than asked
        assert steps == 4 and m.step_s.count == steps * m.latency_s.count
        # The VAE time is the remainder of the call after the last step, so the parts add up by construction;
        # what can fail: every part is positive (the step marks lie inside the call, in order).
        assert min(m.text_encode_s.samples) > 0 and min(m.step_s.samples) > 0 and min(m.vae_decode_s.samples) > 0
        # 2 images per call: at least 2 × calls per second of the test's wall clock, at most the fastest call's
        assert 2 * m.latency_s.count / wall_s < m.images_per_s <= 2 / m.latency_s.min
        assert "ttft_s" not in m.model_dump() and r.parameters > 0
        f = r.fidelity
        assert f is not None and f.output.startswith("decoded image") and f.rmse is not None
        if precision == "fp32":
            # the reference itself; compile and onnxruntime may reorder fp32 arithmetic
            assert f.max_abs_error < 1e-4
        else:
            assert 0 < f.rmse < 0.1


def test_int8_quantizes_the_unet(sd_sweep):
    r = sd_sweep["eager", "int8"]
    q = r.quantization
    assert r.details["optimized_module"] == "UNet2DConditionModel"
    assert q.quantized_layers > 0 and q.float_layers_left == 0 and q.weight_bytes_after < q.weight_bytes_before
    # the pipeline's weights: UNet (now int8 linears) + VAE + text encoder, still fp32
    assert r.weight_bytes < sd_sweep["eager", "fp32"].weight_bytes
    assert sd_sweep["compile", "fp32"].cold_costs["compile_s"] > 0
    assert sd_sweep["compile", "fp32"].details["optimized_module"] == "UNet2DConditionModel"


def test_onnxruntime_runs_the_three_exported_graphs(sd_sweep):
    r = sd_sweep["onnxruntime", "fp32"]
    assert r.details["onnx_graphs_run"] == ["text_encoder/model.onnx", "unet/model.onnx", "vae_decoder/model.onnx"]
    assert r.details["providers"] == ["CPUExecutionProvider"] and r.details["export_cache"] in ("hit", "miss")
    assert r.parameters == sd_sweep["eager", "fp32"].parameters  # the same pipeline was exported
    # the graphs' fp32 initializers: every weight once, minus the VAE encoder, which text to image never runs
    eager_bytes = sd_sweep["eager", "fp32"].weight_bytes
    assert 0.5 * eager_bytes < r.weight_bytes < eager_bytes
    int8 = sd_sweep["onnxruntime", "int8"]
    assert int8.status == "unsupported" and "UNet" in int8.error


def test_image_size_must_fit_the_latent_grid(tmp_path):
    (tmp_path / "s.yaml").write_text(
        textwrap.dedent("""
        name: odd
        task: text-to-image
        model: {name: tiny-sd}
        matrix: {backend: eager, precision: fp32, batch_size: 1}
        workload: {height: 30, width: 32}
        """)
    )
    proc = run_cli("validate", str(tmp_path / "s.yaml"))
    assert proc.returncode == 2 and "workload.height" in proc.stderr and "Traceback" not in proc.stderr


def test_a_language_model_is_not_a_pipeline(tmp_path):
    (tmp_path / "s.yaml").write_text(
        textwrap.dedent("""
        name: wrong
        task: text-to-image
        model: {name: tiny-gpt2}
        matrix: {backend: eager, precision: fp32, batch_size: 1}
        """)
    )
    proc = run_cli("validate", str(tmp_path / "s.yaml"))
    assert proc.returncode == 2 and "model.name" in proc.stderr and "not a diffusion pipeline" in proc.stderr
