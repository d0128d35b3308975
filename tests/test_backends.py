"""eager and compile × every CPU precision, torchao int8 verification, fidelity against the fp32 eager
reference, weight bytes, and torch.compile's cold-cache and recompile accounting. Tiny models, CPU."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from bench.backends.quantize import QuantizationNotApplied, conv1d_to_linear, quantize_int8, tensor_bytes, weight_stats
from bench.measure import fidelity
from bench.results import read_records

from conftest import run_cli
from shared_sweeps import shared_sweep

SWEEP_TIMEOUT_S = 600
PRECISIONS = ["fp32", "fp16", "bf16", "int8", "int8-dyn"]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# eager and compile (aot_eager: the same graph capture without inductor's code generation, so the whole matrix
# compiles in seconds) × every CPU precision, one sweep, shared (tests/shared_sweeps.py)
backends_matrix = shared_sweep(
    "backends_matrix",
    {
        "matrix.yaml": textwrap.dedent(
            f"""
            name: matrix
            task: text-generation
            model: {{name: tiny-gpt2}}
            device: cpu
            matrix:
              backend: [eager, compile]
              precision: {json.dumps(PRECISIONS)}
              batch_size: [2]
            backend_options:
              compile: {{compiler: aot_eager}}
            workload: {{prompt_tokens: 8, new_tokens: 4}}
            measure: {{warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 120, max_cv: 10.0}}
            """
        )
    },
    timeout_s=SWEEP_TIMEOUT_S,
    workers=11,  # ten points and one reference
)


@pytest.fixture(scope="module")
def matrix_sweep(backends_matrix):
    run = backends_matrix.check().out
    return run, read_records(run / "results.jsonl")


def test_every_cpu_backend_and_precision_is_ok_with_fidelity(matrix_sweep):
    run_dir, records = matrix_sweep
    assert sorted((r.backend, r.precision) for r in records) == sorted(
        (b, p) for b in ("eager", "compile") for p in PRECISIONS
    )
    for r in records:
        assert r.status == "ok", (r.backend, r.precision, r.error)
        f = r.fidelity
        assert f is not None, (r.backend, r.precision, r.warnings)
        assert f.output.startswith("logits")
        assert 0.99 < f.cosine_mean <= 1.0 + 1e-6 and f.cosine_min <= f.cosine_mean + 1e-9
        assert 0 <= f.token_agreement <= 1 and 0 <= f.matched_prefix_tokens <= 4
        assert r.parameters > 0 and r.weight_bytes > 0
        if r.precision == "fp32":
            # the reference is eager fp32 of the same weights and inputs: identical outputs
            assert f.max_abs_error == 0.0 and f.token_agreement == 1.0 and f.top1_agreement == 1.0
        else:
            assert f.max_abs_error > 0.0  # a different precision really ran
    # one reference for the model and inputs, reused by all ten runs
    assert len(list((run_dir / "references").glob("*.pt"))) == 1


def test_weight_bytes_follow_the_precision(matrix_sweep):
    _, records = matrix_sweep
    by = {(r.backend, r.precision): r for r in records}
    fp32 = by["eager", "fp32"]
    assert fp32.weight_bytes == 4 * fp32.parameters
    assert by["eager", "bf16"].weight_bytes == 2 * fp32.parameters
    assert by["eager", "fp16"].weight_bytes == 2 * fp32.parameters
    for precision in ("int8", "int8-dyn"):
        for backend in ("eager", "compile"):
            r = by[backend, precision]
            q = r.quantization
            assert q is not None and q.method.startswith("torchao")
            assert q.quantized_layers == 9 and q.float_layers_left == 0  # 2 blocks × 4 Conv1D + lm_head
            assert q.weight_bytes_before == fp32.weight_bytes and q.weight_bytes_after == r.weight_bytes
            assert r.weight_bytes < q.weight_bytes_before
            assert r.details["conv1d_converted_to_linear"] == 8
            assert r.cold_costs["quantize_s"] > 0
            assert r.parameters == fp32.parameters  # an untied int8 lm_head copy is bytes, not parameters
    assert by["eager", "fp32"].quantization is None


def test_compile_records_its_own_cold_costs(matrix_sweep):
    _, records = matrix_sweep
    for r in records:
        if r.backend == "compile":
            assert r.cold_costs["compile_s"] > 0
            assert r.details["compiler"] == "aot_eager" and r.details["cache_implementation"] == "static"
            c = r.details["compile"]
            assert c["compilations_cold"] == 1  # the decode step; HF generate runs the prefill eagerly
            assert r.details["compiled"].startswith("decode step")
            assert c["compilations_measured"] == 0 and r.valid
        else:
            assert "compile_s" not in r.cold_costs


inductor_cold = shared_sweep(
    "inductor_cold",
    {
        "c.yaml": textwrap.dedent("""
        name: cold
        task: text-generation
        model: {name: tiny-gpt2}
        device: cpu
        matrix: {backend: compile, precision: fp32, batch_size: 1}
        workload: {prompt_tokens: 8, new_tokens: 3}
        measure: {warmup: 0, min_iterations: 3, min_time_s: 0, timeout_s: 240, max_cv: 100.0}
        """)
    },
    "--no-fidelity",
    timeout_s=300,
)


def test_inductor_compiles_the_decode_step_once_with_a_cold_cache(inductor_cold):
    """warmup 0: the first (cold, unmeasured) call compiles the decode step with a fresh inductor cache;
    nothing compiles again in the measured phase, so the record is valid."""
    (r,) = read_records(inductor_cold.check().out / "results.jsonl")
    assert r.status == "ok" and r.fidelity is None
    c = r.details["compile"]
    assert r.details["compiler"] == "inductor" and r.details["inductor_cache"] == "cold"
    assert c["fx_graph_cache_hits"] == 0 and c["fx_graph_cache_misses"] >= 1  # a fresh cache: nothing reused
    assert c["compilations_cold"] == 1 and c["compilations_measured"] == 0
    assert r.valid and r.cold_costs["compile_s"] > 0


def test_a_compilation_in_the_measured_phase_makes_the_record_invalid():
    """dynamo's own compilation records: a new input shape after the cold phase recompiles (dynamic=False),
    and the monitor must report it, with dynamo's reason."""
    import torch

    from bench.backends.compile import CompileMonitor

    torch._dynamo.reset()
    fn = torch.compile(lambda x: torch.nn.functional.gelu(x) * 2, backend="aot_eager", dynamic=False)
    monitor = CompileMonitor()
    fn(torch.ones(4))
    assert monitor.cold_metrics()["compile_s"] > 0
    monitor.start_measured()
    fn(torch.ones(4))  # same shape: no compilation
    details, invalid = monitor.end_measured()
    assert details["compile"]["compilations_measured"] == 0 and invalid == []
    monitor = CompileMonitor()
    monitor.cold_metrics()
    monitor.start_measured()
    fn(torch.ones(5))  # a new shape: dynamo recompiles
    details, invalid = monitor.end_measured()
    assert details["compile"]["compilations_measured"] == 1
    assert len(invalid) == 1 and "measured phase" in invalid[0] and "size mismatch" in invalid[0]


reduce_overhead = shared_sweep(
    "reduce_overhead",
    {
        "c.yaml": textwrap.dedent("""
        name: ro
        task: text-generation
        model: {name: tiny-gpt2}
        device: cpu
        matrix: {backend: compile, precision: fp32, batch_size: 1}
        backend_options: {compile: {mode: reduce-overhead}}
        workload: {prompt_tokens: 8, new_tokens: 2}
        """)
    },
    "--no-fidelity",
    timeout_s=300,
)


def test_reduce_overhead_on_cpu_fails_with_the_reason(reduce_overhead):
    assert reduce_overhead.proc.returncode == 1, reduce_overhead.proc.stderr[-3000:]
    (r,) = read_records(reduce_overhead.out / "results.jsonl")
    assert r.status == "failed" and "CUDA graphs" in r.error


def test_unknown_compile_option_is_an_input_error(tmp_path):
    scenario = write(
        tmp_path / "c.yaml",
        """
        name: bad
        task: text-generation
        model: {name: tiny-gpt2}
        matrix: {backend: compile, precision: fp32, batch_size: 1}
        backend_options: {compile: {mode: fastest}}
        """,
    )
    proc = run_cli("validate", str(scenario))
    assert proc.returncode == 2
    assert "backend_options.compile.mode" in proc.stderr and "Traceback" not in proc.stderr


# --- units ---------------------------------------------------------------------------------------------------


def _tiny_gpt2():
    from transformers import AutoModelForCausalLM

    from bench import models

    return models.build(models.resolve("tiny-gpt2"), AutoModelForCausalLM, torch.float32, torch.device("cpu"))


def test_conv1d_to_linear_keeps_the_outputs():
    model = _tiny_gpt2()
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        before = model(ids).logits
        assert conv1d_to_linear(model) == 8
        after = model(ids).logits
    assert torch.allclose(before, after, atol=1e-6, rtol=0)


def test_int8_that_quantizes_nothing_fails_loudly():
    """A model with no nn.Linear (or Conv1D) has nothing torchao would quantize: that must be an error,
    not an fp32 run labelled int8."""
    model = torch.nn.Sequential(torch.nn.Embedding(100, 16), torch.nn.LayerNorm(16))
    with pytest.raises(QuantizationNotApplied, match="quantized none"):
        quantize_int8(model, "int8")


def test_int8_weights_are_counted_through_the_tensor_subclass():
    model = torch.nn.Sequential(torch.nn.Linear(256, 256, bias=False))
    count, before = weight_stats(model)
    summary, _, _ = quantize_int8(model, "int8")
    count_after, after = weight_stats(model)
    assert count == count_after == 256 * 256 and before == 4 * 256 * 256
    # int8 data + one fp32 scale (+ zero point) per output channel
    assert 256 * 256 < after < 256 * 256 + 256 * 8 + 64
    assert summary.quantized_layers == 1 and summary.weight_bytes_after == after == tensor_bytes(model[0].weight)


def test_fidelity_compare_known_values():
    ref = {"primary": torch.tensor([[1.0, 0.0], [0.0, 2.0]]), "tokens": torch.tensor([[1, 2, 3], [4, 5, 6]])}
    out = {"primary": torch.tensor([[1.0, 1.5], [0.0, 2.5]]), "tokens": torch.tensor([[1, 9, 3], [4, 5, 6]])}
    f = fidelity.compare(out, ref, "logits")
    row0 = 1 / (1 + 1.5**2) ** 0.5
    assert f.cosine_min == pytest.approx(row0) and f.cosine_mean == pytest.approx((row0 + 1) / 2)
    assert f.max_abs_error == pytest.approx(1.5) and f.max_rel_error == pytest.approx(1.5 / 2)
    assert f.rmse == pytest.approx(((1.5**2 + 0.5**2) / 4) ** 0.5)
    assert f.top1_agreement == 0.5  # row 0's argmax moved, row 1's did not
    assert f.token_agreement == pytest.approx(5 / 6)
    assert f.matched_prefix_tokens == pytest.approx((1 + 3) / 2)


def test_fidelity_refuses_a_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        fidelity.compare({"primary": torch.zeros(2, 3)}, {"primary": torch.zeros(2, 4)}, "x")
