"""compile's `generation: loop` (bench.backends.decode_loop): tokens equal HF greedy `generate`, exactly
new_tokens, TTFT inside the call, fp32/int8/int8-dyn through the worker, no compilation in the measured phase
(and one caught when it happens), records and the report say which loop ran. Tiny models, CPU; aot_eager
(dynamo's capture without inductor's code generation) keeps compiles to seconds."""

from __future__ import annotations

import textwrap

import pytest
import torch

from bench.backends.compile import CompileMonitor
from bench.backends.decode_loop import DecodeLoop
from bench.results import read_records

from shared_sweeps import shared_sweep

NEW = 4


def _model(name: str):
    from transformers import AutoModelForCausalLM

    from bench import models

    return models.build(models.resolve(name), AutoModelForCausalLM, torch.float32, torch.device("cpu"), seed=0)


def _kwargs(eos: int | None, new: int = NEW) -> dict:
    return dict(
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=eos,
        use_cache=True,
    )


class _Marks:
    """A streamer as the workload's: what it was handed, and when (perf_counter_ns)."""

    def __init__(self):
        import time

        self._now = time.perf_counter_ns
        self.values, self.times, self.ended = [], [], False

    def put(self, value):
        self.values.append(value.clone())
        self.times.append(self._now())

    def end(self):
        self.ended = True


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_loop_tokens_equal_hf_greedy_generate(name):
    """Oracle: HF `generate` greedy on the same eager fp32 model (its own loop, processors, dynamic cache).
    EOS is set to the token the unmasked loop picks first, so min_new_tokens' EOS mask decides a token."""
    model = _model(name)
    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    loop = DecodeLoop(model, dict(backend="aot_eager", dynamic=False, fullgraph=True))
    with torch.inference_mode():
        unmasked = loop.generate(ids, mask, **_kwargs(None))
        eos = int(unmasked[0, 7])
        hf = model.generate(input_ids=ids, attention_mask=mask, **_kwargs(eos))
        streamer = _Marks()
        out = loop.generate(ids, mask, streamer=streamer, **_kwargs(eos))
        again = loop.generate(ids, mask, return_dict_in_generate=True, output_logits=True, **_kwargs(eos))
    assert hf.shape == out.shape == (2, 7 + NEW)
    assert torch.equal(out, hf), (out, hf)
    assert not torch.equal(unmasked, hf)  # the EOS mask changed a token: the comparison above tested it
    assert (out[:, 7:] != eos).all()
    assert torch.equal(again.sequences, hf) and len(again.logits) == NEW
    # the first logits are the model's output at the prompt's last position (what fidelity compares)
    with torch.inference_mode():
        direct = model(input_ids=ids).logits[:, -1, :]
    torch.testing.assert_close(again.logits[0], direct, rtol=1e-4, atol=1e-5)
    # the streamer: the prompt, then each new token in order, then end
    assert len(streamer.values) == NEW + 1 and streamer.ended
    assert torch.equal(streamer.values[0], ids)
    assert torch.equal(torch.cat(streamer.values[1:], dim=1), hf[:, 7:])
    assert streamer.times == sorted(streamer.times)


def test_loop_refuses_what_it_does_not_do():
    model = _model("tiny-gpt2")
    loop = DecodeLoop(model, dict(backend="aot_eager", dynamic=False))
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="exactly max_new_tokens"):
        loop.generate(ids, max_new_tokens=3, min_new_tokens=None)
    with pytest.raises(ValueError, match="greedy"):
        loop.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=True)
    with pytest.raises(ValueError, match="unpadded"):
        loop.generate(ids, torch.tensor([[0, 1, 1, 1]]), max_new_tokens=3, min_new_tokens=3)


@pytest.mark.parametrize("precision", ["int8", "int8-dyn"])
def test_loop_on_a_torchao_int8_model_equals_hf_greedy_on_it(precision):
    """torchao's tensor subclasses go through the compiled step: the same tokens as HF `generate` (eager)
    on the same quantized model."""
    from bench.backends.quantize import quantize_int8

    model = _model("tiny-llama")
    summary, _, _ = quantize_int8(model, precision)
    assert summary.quantized_layers > 0
    ids = torch.randint(0, model.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(2))
    eos = model.config.eos_token_id
    with torch.inference_mode():
        hf = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **_kwargs(eos))
        out = DecodeLoop(model, dict(backend="aot_eager", dynamic=False, fullgraph=True)).generate(ids, **_kwargs(eos))
    assert torch.equal(out, hf), (out, hf)


def test_a_recompile_of_the_loop_in_the_measured_phase_is_caught():
    """Same calls: nothing compiles again. A new batch size (a new static cache, new shapes) recompiles the
    decode step, and the compile monitor says so."""
    torch._dynamo.reset()
    model = _model("tiny-gpt2")
    loop = DecodeLoop(model, dict(backend="aot_eager", dynamic=False))
    ids = torch.ones(1, 5, dtype=torch.long)
    monitor = CompileMonitor()
    with torch.inference_mode():
        loop.generate(ids, max_new_tokens=3, min_new_tokens=3)
        assert monitor.cold_metrics()["compile_s"] > 0
        monitor.start_measured()
        loop.generate(ids, max_new_tokens=3, min_new_tokens=3)
        loop.generate(ids, max_new_tokens=3, min_new_tokens=3)
        details, invalid = monitor.end_measured()
        assert details["compile"]["compilations_measured"] == 0 and invalid == []
        loop.generate(torch.ones(3, 5, dtype=torch.long), max_new_tokens=3, min_new_tokens=3)
    details, invalid = monitor.end_measured()
    assert details["compile"]["compilations_measured"] >= 1
    assert "during the measured phase" in invalid[0]


SCENARIO = """
name: {name}
task: text-generation
model: {{name: tiny-gpt2}}
device: cpu
matrix: {{backend: [compile], precision: {precisions}, batch_size: [2]}}
backend_options: {{compile: {{compiler: aot_eager, generation: {generation}}}}}
workload: {{prompt_tokens: 8, new_tokens: {new}}}
measure: {{warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 240, max_cv: 10.0}}
"""


compile_loops = shared_sweep(  # run with the other shared sweeps (tests/shared_sweeps.py)
    "compile_loops",
    {
        f"{name}.yaml": textwrap.dedent(
            SCENARIO.format(name=f"tiny-{name}", generation=generation, precisions=precisions, new=NEW)
        )
        for name, generation, precisions in (("loop", "loop", "[fp32]"), ("hf", "generate", "[fp32]"))
    },
    timeout_s=600,
    workers=3,
)


@pytest.fixture(scope="module")
def sweep(compile_loops):
    """One sweep through the worker: the loop and HF generate at fp32, with fidelity (a worker costs tens of
    seconds on a contended 2-core machine; int8 in the loop is tested in-process above)."""
    out = compile_loops.check().out
    return out, {(r.details.get("generation"), r.precision): r for r in read_records(out / "results.jsonl")}


def test_loop_records_measure_and_say_which_loop_ran(sweep):
    _, records = sweep
    assert set(records) == {("loop", "fp32"), ("generate", "fp32")}
    for (generation, _), r in records.items():
        assert r.status == "ok", r.error
        assert r.backend_options == {"compiler": "aot_eager", "generation": generation}
        assert r.details["compile"]["compilations_measured"] == 0, r.details["compile"]
        assert r.cold_costs["compile_s"] > 0
        m = r.metrics
        # exactly new_tokens per call: one ITL gap per token after the first, for every measured call
        assert m.itl_s.count == m.latency_s.count * (NEW - 1)
        # TTFT is inside its own call: every call's first token came before its last
        for ttft, latency in zip(m.ttft_s.samples, m.latency_s.samples):
            assert 0 < ttft < latency
    assert records[("loop", "fp32")].details["compiled"].startswith("decode step (bench decode loop")
    # fidelity against the fp32 eager reference (HF generate on the uncompiled model): same tokens at fp32
    assert records[("loop", "fp32")].fidelity.token_agreement == 1.0
    assert records[("generate", "fp32")].fidelity.token_agreement == 1.0


def test_report_names_the_loop_beside_the_efficiency(sweep, tmp_path):
    """With a calibration stored with the run, every compile row's efficiency carries the loop its records name.
    The sweep ran without one (the tests' cache is empty), so a copy of its records is given the calibrated
    ceiling the worker would have stored (bench.roofline.analysis.bounds, as the worker computes them)."""
    import shutil

    from bench.roofline import analysis
    from bench.roofline.schema import Ceiling
    from bench.store import append_records

    out, records = sweep
    record = records[("loop", "fp32")]
    ceiling = Ceiling(
        source="calibrated",
        device_name=record.device_name,
        memory_bytes_per_s=10e9,
        matmul_flops_per_s={d: 100e9 for d in ("fp32", "fp16", "bf16", "int8")},
    )
    stored = tmp_path / "run"
    shutil.copytree(out, stored, ignore=shutil.ignore_patterns("results.jsonl", "report"))
    copied = read_records(out / "results.jsonl")
    for r in copied:
        if r.roofline is not None and r.roofline.phases:
            r.roofline.ceilings["calibrated"] = ceiling
            for phase in r.roofline.phases.values():
                phase.bounds = analysis.bounds(phase, r.roofline.ceilings)
    append_records(stored / "results.jsonl", copied)
    out = stored
    from bench.report import write_report

    md = write_report([out], tmp_path / "report").markdown.read_text()
    rows = {
        (line.split("|")[2].strip(), "loop" if "(loop)" in line else "generate" if "(generate)" in line else None)
        for line in md.splitlines()
        if line.startswith("| compile |") and "| ok |" in line and ("(loop)" in line or "(generate)" in line)
    }  # the Details table (the main one has no efficiency)
    assert rows == {("fp32", "loop"), ("fp32", "generate")}, md


def _compile_run(tmp_path, task: str, model: str, options: str, workload: str):
    """The one RunSpec of a compile fp32 batch-1 scenario with these compile options."""
    from bench.scenario import load_scenario

    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        f"name: s\ntask: {task}\nmodel: {{name: {model}}}\ndevice: cpu\n"
        "matrix: {backend: [compile], precision: [fp32], batch_size: [1]}\n"
        f"backend_options: {{compile: {options}}}\nworkload: {workload}\n"
    )
    (run,) = load_scenario(scenario).run_specs()
    return run


def test_generation_loop_is_rejected_for_another_task(tmp_path):
    from bench.backends.compile import CompileBackend

    run = _compile_run(
        tmp_path, "feature-extraction", "tiny-bert", "{compiler: aot_eager, generation: loop}", "{sequence_length: 8}"
    )
    with pytest.raises(ValueError, match="generation: loop is for text generation"):
        CompileBackend(run.backend_options).prepare(None, run, torch.device("cpu"))


def test_freezing_reaches_inductor_and_keeps_hf_greedy_tokens(tmp_path, monkeypatch):
    """`freezing: true` through the backend's own prepare(): inductor compiles the loop's step with the
    parameters as constants (its generated code names them `_frozen_param…`, which it does only when freezing),
    and the tokens are still HF greedy `generate`'s on the eager model."""
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    from bench.backends.compile import CompileBackend

    monkeypatch.setattr(inductor_config, "freezing", False)  # restored after the test: prepare() sets it
    run = _compile_run(
        tmp_path,
        "text-generation",
        "tiny-gpt2",
        "{generation: loop, freezing: true}",
        "{prompt_tokens: 6, new_tokens: 4}",
    )
    model = _model("tiny-gpt2")
    prepared = CompileBackend(run.backend_options).prepare(model, run, torch.device("cpu"))
    assert prepared.details["freezing"] is True and isinstance(prepared.runnable, DecodeLoop)
    ids = torch.randint(0, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(3))
    eos = model.config.eos_token_id
    with torch.inference_mode():
        hf = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **_kwargs(eos))
        out, code = run_and_get_code(prepared.runnable.generate, ids, torch.ones_like(ids), **_kwargs(eos))
    assert torch.equal(out, hf), (out, hf)
    assert code and any("_frozen_param" in c for c in code), code[0][:2000] if code else "no code generated"


def test_freezing_is_refused_without_inductor(tmp_path):
    from bench.backends.compile import CompileBackend

    with pytest.raises(ValueError, match="freezing is inductor's"):
        CompileBackend({"compiler": "aot_eager", "freezing": True}).prepare(None, None, torch.device("cpu"))
    # HF generate's compiled step with freezing failed in inductor when measured: refused with the way out
    reason = CompileBackend.unsupported_reason("text-generation", "fp32", "cpu", {"freezing": True})
    assert reason and "use generation: loop" in reason
    assert (
        CompileBackend.unsupported_reason("text-generation", "fp32", "cpu", {"freezing": True, "generation": "loop"})
        is None
    )
    assert CompileBackend.unsupported_reason("feature-extraction", "fp32", "cpu", {"freezing": True}) is None
