"""Physical limits: calibration, datasheets, analytic bytes/FLOPs, the bound rule, and efficiency in records
and reports. Analytic values are checked against numbers worked out by hand from the tiny configs."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from bench.measure.memory import MemoryMetrics
from bench.measure.stats import Stats
from bench.results import Record, read_records
from bench.roofline import analysis, calibrate, datasheets, work
from bench.roofline.schema import Ceiling

from conftest import REPO, covering, run_cli

CALIBRATE_TIMEOUT_S, RUN_TIMEOUT_S = 120, 300
pytestmark = covering(CALIBRATE_TIMEOUT_S)  # the module fixture's calibration

FIXTURES = REPO / "tests" / "fixtures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_calibration(tmp_path_factory):
    """One `bench calibrate --quick` on the CPU into a private cache directory, shared by this module."""
    import os

    cache = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(cache)
    try:
        t0 = time.perf_counter()
        proc = run_cli("calibrate", "--quick", "--device", "cpu", timeout=CALIBRATE_TIMEOUT_S)
        seconds = time.perf_counter() - t0
    finally:
        os.environ["BENCH_CACHE_DIR"] = saved or ""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = (cache / "calibration").glob("*.json")
    return cache, path, proc, seconds


# --- calibration -------------------------------------------------------------------------------------------


def test_quick_calibration_is_plausible_and_stored(quick_calibration):
    cache, path, proc, seconds = quick_calibration
    assert seconds < 60, f"--quick took {seconds:.0f} s"  # ~7 s here, imports included
    cal = calibrate.Calibration.model_validate_json(path.read_text())
    assert path.name == calibrate.slug("cpu", cal.device_name, cal.threads) + ".json"
    assert cal.device_type == "cpu" and cal.quick and cal.threads >= 1
    assert cal.environment["torch"].startswith("2.") and cal.environment["torch_threads"] == cal.threads
    assert cal.measured_at.startswith("20")
    assert cal.copy_bandwidth.buffer_bytes >= 64 * 2**20
    l3 = calibrate.last_level_cache_bytes()
    if l3:
        assert cal.copy_bandwidth.buffer_bytes >= 4 * l3  # far beyond the last-level cache
    assert cal.copy_bandwidth.bytes_per_call == 2 * cal.copy_bandwidth.buffer_bytes  # read + written
    assert 0.1e9 < cal.memory_bytes_per_s < 1000e9
    assert cal.memory_bytes_per_s >= cal.copy_bandwidth.best_bytes_per_s
    assert cal.matmul["fp32"].best_flops_per_s > 0.1e9
    assert "TF32" in cal.matmul["tf32"].unavailable  # CPU: recorded as unavailable with the reason, not faked
    for dtype in calibrate.DTYPES:
        m = cal.matmul[dtype]
        assert (m.best_flops_per_s is not None and m.best_flops_per_s > 0) != (m.unavailable is not None), dtype
        if m.best_flops_per_s:
            assert m.median_flops_per_s <= m.best_flops_per_s and m.calls >= 3 and m.size >= 256
    assert "QUICK" in proc.stdout and "stored" in proc.stdout


def test_calibration_is_reused_unless_forced(quick_calibration, monkeypatch):
    cache, path, _, _ = quick_calibration
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    before = path.read_text()
    proc = run_cli("calibrate", "--quick", "--device", "cpu")
    assert proc.returncode == 0 and "reused" in proc.stdout and path.read_text() == before
    # A full calibration is not satisfied by a quick one (checked without measuring: the store decides).
    cal, _ = calibrate.load("cpu", json.loads(before)["device_name"], json.loads(before)["threads"])
    assert cal.quick


def test_calibrate_rejects_a_device_it_cannot_use(cli):
    import torch

    proc = cli("calibrate", "--device", "tpu")
    assert proc.returncode == 2 and "--device" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        proc = cli("calibrate", "--device", "cuda")
        assert proc.returncode == 2 and "no CUDA device" in proc.stderr


# --- datasheets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, sheet, bandwidth_gb_s",
    [
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB", 2039),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB", 1555),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB", 1935),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB", 1555),
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 3350),
        ("NVIDIA H100 PCIe", "H100 PCIe", 2000),
        ("NVIDIA H200", "H200 SXM", 4800),
        ("NVIDIA L4", "L4", 300),
        ("NVIDIA L40S", "L40S", 864),
        ("NVIDIA A10G", "A10G", 600),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 1008),
        # other clocks or memory: no datasheet claimed rather than a wrong one
        ("NVIDIA H100 NVL", None, None),
        ("NVIDIA H200 NVL", None, None),
        ("NVIDIA GH200 480GB", None, None),
        ("NVIDIA L40", None, None),
        ("NVIDIA GeForce RTX 4090 D", None, None),
        ("AMD EPYC", None, None),
    ],
)
def test_datasheet_lookup(name, sheet, bandwidth_gb_s):
    found = datasheets.lookup(name)
    assert (found.name if found else None) == sheet
    if found:
        assert found.memory_bytes_per_s == bandwidth_gb_s * 1e9 and found.source


def test_datasheet_entries_are_dense_and_complete():
    for sheet in datasheets.DATASHEETS:
        for dtype in ("fp32", "tf32", "bf16", "fp16", "int8"):
            assert (dtype in sheet.matmul_flops_per_s) != (dtype in sheet.unknown), (sheet.name, dtype)
    a100 = datasheets.lookup("NVIDIA A100-SXM4-80GB")
    assert a100.matmul_flops_per_s["bf16"] == 312e12 and a100.matmul_flops_per_s["fp32"] == 19.5e12
    h100 = datasheets.lookup("NVIDIA H100 80GB HBM3")  # datasheet 1,979 TFLOPS is with sparsity
    assert h100.matmul_flops_per_s["bf16"] == pytest.approx(989.5e12)


# --- analytic bytes and FLOPs, by hand -------------------------------------------------------------------


def _record(
    model: str,
    precision: str = "fp32",
    batch: int = 1,
    prompt: int = 8,
    new: int = 4,
    tpot: float = 1e-3,
    ttft: float = 2e-3,
    weight_bytes: int | None = None,
    task: str = "text-generation",
    details: dict | None = None,
    workload: dict | None = None,
    **extra,
) -> Record:
    samples = [ttft + tpot * (new - 1)] * 3
    generation = task == "text-generation"
    rate = batch / samples[0]  # the workload's throughputs (the roofline reads none of them)
    metrics = {"latency_s": Stats.of(samples)}
    if generation:
        metrics |= {
            "ttft_s": Stats.of([ttft] * 3),
            "tpot_s": Stats.of([tpot] * 3),
            "output_tokens_per_s": rate * new,
            "requests_per_s": rate,
            "prefill_tokens_per_s": batch * prompt / ttft,
        }
    elif task == "text-to-image":
        metrics |= {
            "step_s": Stats.of([tpot] * 3),
            "vae_decode_s": Stats.of([ttft] * 3),
            "text_encode_s": Stats.of([ttft] * 3),
            "images_per_s": rate,
            "steps_per_s": new / samples[0],
        }
    else:
        metrics |= {"sequences_per_s": rate, "input_tokens_per_s": rate * prompt}
    workload = workload or ({"prompt_tokens": prompt, "new_tokens": new} if generation else {"sequence_length": prompt})
    return Record(
        run_id="r",
        point_id="p",
        scenario="s",
        scenario_file="s.yaml",
        model=model,
        weights="random",
        task=task,
        backend="eager",
        precision=precision,
        batch_size=batch,
        workload=workload,
        device="cpu",
        memory=MemoryMetrics(),
        warmup_calls=0,
        measured_time_s=1,
        cold_costs={"load_s": 1, "first_call_s": 1},
        device_name="Test CPU",
        status="ok",
        details=details or {"torch_threads": 2},
        weight_bytes=weight_bytes,
        metrics=metrics,
        **extra,
    )


def test_model_shapes_by_hand():
    from transformers import AutoModel, AutoModelForCausalLM

    from bench import models

    def shape(name, cls):
        return work.model_shape(models.load_config(models.resolve(name)), cls)

    gpt2 = shape("tiny-gpt2", AutoModelForCausalLM)
    # per layer: c_attn 64×192 + attn c_proj 64×64 + c_fc 64×256 + mlp c_proj 256×64 = 49,152; 2 layers
    assert gpt2.per_token_matmul_params == 98_304
    assert gpt2.output_params == gpt2.per_sequence_matmul_params == 1024 * 64 and gpt2.tied_output
    assert gpt2.lookup_params == 512 * 64  # wpe; wte is the (tied) LM head
    assert gpt2.parameters == 198_400 and (gpt2.layers, gpt2.kv_heads, gpt2.head_dim) == (2, 4, 16)
    llama = shape("tiny-llama", AutoModelForCausalLM)
    # per layer: q 64×64 + k 64×32 + v 64×32 + o 64×64 + gate, up, down 3 × 64×176 = 46,080
    assert llama.per_token_matmul_params == 92_160 and not llama.tied_output
    assert llama.lookup_params == llama.output_params == 1024 * 64 and (llama.kv_heads, llama.head_dim) == (2, 16)
    bert = shape("tiny-bert", AutoModel)
    # per layer: q, k, v, o 4 × 64×64 + 64×128 + 128×64 = 32,768; pooler 64×64 per sequence
    assert bert.per_token_matmul_params == 65_536 and bert.per_sequence_matmul_params == 4096
    assert bert.lookup_params == (1024 + 512 + 2) * 64 and bert.output_params == 0


def test_tiny_gpt2_decode_and_prefill_by_hand():
    rf = analysis.for_record(_record("tiny-gpt2", batch=2, weight_bytes=198_400 * 4, tpot=1e-3, ttft=4e-3))
    decode, prefill = rf.phases["decode"], rf.phases["prefill"]
    assert rf.primary == "decode" and decode.timed_by == "tpot_s p50" and prefill.timed_by == "ttft_s p50"
    weights = 198_400 * 4 - 512 * 64 * 4  # all weights but the position table: 662,528 B
    # mean context over the 3 timed decode steps (9, 10, 11 keys) = 8 + 4/2 = 10
    kv_read = 2 * 2 * 4 * 16 * 10 * 4 * 2  # K and V × layers × kv heads × head dim × context × fp32 × batch
    assert decode.terms["kv_cache_read_bytes"] == kv_read == 20_480
    assert decode.bytes == weights + kv_read == 683_008
    # 2 × (per-token 98,304 + LM head 65,536) × batch 2 + attention 4 × 2 layers × 4 heads × 16 × 10 × 2
    assert decode.flops == 2 * (98_304 + 65_536) * 2 + 4 * 2 * 4 * 16 * 10 * 2 == 665_600
    assert decode.achieved_bytes_per_s == pytest.approx(683_008 / 1e-3)
    # prefill: 2 × 98,304 × 2 × 8 tokens + LM head for one position per sequence + causal attention
    assert prefill.flops == 2 * 98_304 * 16 + 2 * 65_536 * 2 + 4 * 2 * 4 * 16 * 2 * (8 * 9 / 2) == 3_444_736
    assert prefill.bytes == weights + 2 * 2 * 4 * 16 * 8 * 4 * 2 == 678_912
    assert prefill.seconds == 4e-3


def test_tiny_llama_gqa_decode_by_hand():
    rf = analysis.for_record(_record("tiny-llama", precision="bf16", weight_bytes=223_552 * 2))
    decode = rf.phases["decode"]
    assert decode.compute_dtype == "bf16"
    # untied: the token table is only indexed, the LM head is read in full; KV over 2 KV heads in bf16
    assert decode.bytes == (223_552 - 65_536) * 2 + 2 * 2 * 2 * 16 * 10 * 2 * 1 == 318_592
    assert decode.flops == 2 * (92_160 + 65_536) + 4 * 2 * 4 * 16 * 10 == 320_512


def test_tiny_bert_forward_by_hand():
    rf = analysis.for_record(
        _record("tiny-bert", task="feature-extraction", batch=2, prompt=8, weight_bytes=169_664 * 4)
    )
    fwd = rf.phases["forward"]
    assert rf.primary == "forward" and fwd.timed_by == "latency_s p50"
    # 2 × 65,536 × 16 tokens + pooler 2 × 4,096 × 2 sequences + bidirectional attention 4·L·H·d·b·S²
    assert fwd.flops == 2 * 65_536 * 16 + 2 * 4096 * 2 + 4 * 2 * 4 * 16 * 2 * 8 * 8 == 2_179_072
    assert fwd.bytes == (169_664 - 98_432) * 4 + 2 * 8 * 64 * 4 == 289_024


def test_quantized_tied_head_leaves_the_float_table_as_a_lookup():
    from bench.results import Quantization

    q = Quantization(
        method="torchao Int8WeightOnlyConfig",
        quantized_layers=9,
        float_layers_left=0,
        weight_bytes_before=793_600,
        weight_bytes_after=500_000,
    )
    rf = analysis.for_record(
        _record(
            "tiny-gpt2",
            precision="int8",
            weight_bytes=500_000,
            quantization=q,
            details={"torch_threads": 2, "compute_dtype": "float32"},
        )
    )
    decode = rf.phases["decode"]
    assert decode.compute_dtype == "fp32"  # weight-only int8: the matmuls run in the activations' dtype
    assert decode.terms["weights_bytes"] == 500_000 - (512 + 1024) * 64 * 4  # wpe and the fp32 wte: lookups
    dyn = analysis.for_record(
        _record(
            "tiny-gpt2",
            precision="int8-dyn",
            weight_bytes=500_000,
            quantization=q,
            details={"torch_threads": 2, "compute_dtype": "float32"},
        )
    )
    assert dyn.phases["decode"].compute_dtype == "int8"
    # ONNX Runtime's MatMulNBits leaves GPT-2's transposed, tied head in fp32: the table is read in full
    kept = q.model_copy(update={"float_layers_left": 1})
    ort = analysis.for_record(
        _record(
            "tiny-gpt2",
            precision="int8",
            weight_bytes=500_000,
            quantization=kept,
            details={"torch_threads": 2, "compute_dtype": "float32"},
        )
    )
    assert ort.phases["decode"].terms["weights_bytes"] == 500_000 - 512 * 64 * 4


def test_analytic_matmul_flops_equal_torch_flop_counter():
    """torch.utils.flop_counter counts the linear layers of a real generate/forward; ours must agree.
    (SDPA on the CPU has no FLOP formula there, so attention is compared by hand above, not here.)"""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModel, AutoModelForCausalLM

    from bench import models

    def linear_flops(fn) -> int:
        with FlopCounterMode(display=False) as fc, torch.inference_mode():
            fn()
        return sum(
            v for op, v in fc.get_flop_counts()["Global"].items() if str(op).split(".")[1] in ("mm", "addmm", "bmm")
        )

    ids = torch.randint(5, 100, (2, 8))
    for name, parameters in (("tiny-gpt2", 198_400), ("tiny-llama", 223_552)):
        model = models.build(models.resolve(name), AutoModelForCausalLM, torch.float32, torch.device("cpu"))

        def generate(n):
            return lambda: model.generate(  # noqa: B023 (called within this iteration)
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )

        rf = analysis.for_record(_record(name, batch=2, prompt=8, new=4, weight_bytes=parameters * 4))
        prefill, step = linear_flops(generate(1)), linear_flops(generate(2)) - linear_flops(generate(1))
        assert prefill == pytest.approx(rf.phases["prefill"].terms["matmul_flops"], rel=1e-3), name
        assert step == pytest.approx(rf.phases["decode"].terms["matmul_flops"], rel=1e-3), name
    bert = models.build(models.resolve("tiny-bert"), AutoModel, torch.float32, torch.device("cpu"))
    rf = analysis.for_record(
        _record("tiny-bert", task="feature-extraction", batch=2, prompt=8, weight_bytes=169_664 * 4)
    )
    assert (
        linear_flops(lambda: bert(input_ids=ids, attention_mask=torch.ones_like(ids)))
        == rf.phases["forward"].terms["matmul_flops"]
    )


def test_unet_step_counts_convolutions_linear_layers_and_attention():
    """A denoising step of tiny-sd at 16×16 (latents 8×8, VAE factor 2) under guidance: 2 latents. The conv and
    linear FLOPs equal torch's counter on a real CPU forward; attention (which the CPU's SDPA kernel hides from
    the counter) equals the hand formula 4·B·C·S·(S + 77) per transformer block (self + cross attention)."""
    pytest.importorskip("diffusers")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench import models
    from bench.workloads.text_to_image import TextToImage

    record = _record(
        "tiny-sd",
        task="text-to-image",
        batch=1,
        weight_bytes=1,
        workload={"height": 16, "width": 16, "num_inference_steps": 4, "guidance_scale": 7.5},
    )
    step = analysis.for_record(record).phases["step"]
    # tiny-sd: CrossAttnDownBlock2D at 32 channels and 8×8 (S 64), the mid block at 64 channels and 4×4
    # (S 16), CrossAttnUpBlock2D with two transformer blocks at 32 channels and 8×8; B = 2, 77 text tokens.
    attention = sum(4 * 2 * c * s * (s + 77) for c, s in ((32, 64), (64, 16), (32, 64), (32, 64)))
    assert step.terms["attention_flops"] == attention == 7_692_288
    torch.manual_seed(0)
    unet = TextToImage._components(models.load_config(models.resolve("tiny-sd")))["unet"].eval()
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        unet(torch.randn(2, 4, 8, 8), torch.tensor([10, 10]), encoder_hidden_states=torch.randn(2, 77, 32))
    counted = {str(op).split(".")[1]: n for op, n in fc.get_flop_counts()["Global"].items()}
    assert step.terms["conv_and_linear_flops"] == counted["convolution"] + counted["mm"] + counted["addmm"]
    assert step.flops == step.terms["conv_and_linear_flops"] + attention
    unet_params = sum(p.numel() for p in unet.parameters())
    assert step.terms["weights_bytes"] == unet_params * 4  # the UNet only: the step reads no VAE/text weights
    assert step.timed_by == "step_s p50"


# --- the bound rule --------------------------------------------------------------------------------------


def test_bound_rule():
    ceiling = Ceiling(
        source="calibrated",
        device_name="x",
        memory_bytes_per_s=10.0,
        matmul_flops_per_s={"fp32": 100.0},
        unavailable={"tf32": "not on a CPU"},
    )
    memory = work._phase("u", flops=100, nbytes=100, terms={}, dtype="fp32", seconds=20, timed_by="t")
    b = analysis.bound(memory, ceiling)  # intensity 1 < ridge 10: bandwidth-bound, attainable 10 FLOP/s
    assert (b.bound, b.ridge_flops_per_byte, b.attainable_flops_per_s) == ("memory", 10.0, 10.0)
    assert b.fraction == pytest.approx(0.5) and b.bandwidth_fraction == pytest.approx(0.5)
    compute = work._phase("u", flops=10_000, nbytes=100, terms={}, dtype="fp32", seconds=200, timed_by="t")
    b = analysis.bound(compute, ceiling)  # intensity 100 > ridge: attainable = the matmul peak
    assert (b.bound, b.attainable_flops_per_s) == ("compute", 100.0)
    assert b.fraction == pytest.approx(0.5) == b.compute_fraction
    tf32 = work._phase("u", flops=100, nbytes=100, terms={}, dtype="tf32", seconds=20, timed_by="t")
    b = analysis.bound(tf32, ceiling)
    assert b.fraction is None and b.bandwidth_fraction == pytest.approx(0.5) and "not on a CPU" in b.note


# --- records and reports ---------------------------------------------------------------------------------


@pytest.mark.serial  # achieved bandwidth over a calibration: both must see the same machine
@covering(CALIBRATE_TIMEOUT_S, RUN_TIMEOUT_S)
def test_gpt2_decode_run_gets_an_efficiency(quick_calibration, tmp_path, monkeypatch):
    """The real GPT-2 small config (random weights), batch 1, 8-token prompt, 4 new tokens, 3 calls."""
    cache, _, _, _ = quick_calibration
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    scenario = tmp_path / "gpt2.yaml"
    scenario.write_text("""
name: gpt2-roofline
task: text-generation
model: {name: gpt2}
device: cpu
matrix: {backend: [eager], precision: [fp32], batch_size: [1]}
workload: {prompt_tokens: 8, new_tokens: 4}
measure: {warmup: 1, min_iterations: 3, min_time_s: 0, timeout_s: 180, max_cv: 10.0}
""")
    out = tmp_path / "out"
    proc = run_cli("run", str(scenario), "--out", str(out), "--no-fidelity", timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = read_records(out / "results.jsonl")
    rf = record.roofline
    assert rf.computed_at == "run" and rf.primary == "decode" and "calibrated" in rf.ceilings
    decode = rf.phases["decode"]
    assert decode.terms["weights_bytes"] == record.weight_bytes - 1024 * 768 * 4  # all but the position table
    bound = decode.bounds["calibrated"]
    assert bound.bound == "memory"  # ~0.5 FLOP/byte: every weight read for 2 FLOPs
    assert 0 < rf.efficiency() <= 1.5, rf.model_dump_json(indent=1)
    assert rf.efficiency() == bound.fraction == pytest.approx(bound.bandwidth_fraction)

    proc = run_cli("report", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (out / "report" / "report.md").read_text()
    assert "| efficiency |" in md and "\n### Roofline\n" in md and "Calibrated ceiling of" in md
    # one point: no charts (the report's charts compare points); the roofline table carries the numbers
    assert "Roofline: achieved FLOP/s vs arithmetic intensity: skipped: 1 measured point" in md


def _fake_calibration(name: str, threads: int) -> calibrate.Calibration:
    bw = calibrate.BandwidthResult(
        method="copy", buffer_bytes=1, bytes_per_call=2, best_bytes_per_s=10e9, median_bytes_per_s=9e9, calls=3
    )
    mm = {
        d: calibrate.MatmulResult(dtype=d, size=256, best_flops_per_s=100e9, median_flops_per_s=90e9, calls=3)
        for d in ("fp32", "fp16", "bf16", "int8")
    }
    mm["tf32"] = calibrate.MatmulResult(dtype="tf32", unavailable="CPU")
    return calibrate.Calibration(
        device_type="cpu",
        device_name=name,
        threads=threads,
        quick=False,
        measured_at="2026-11-23T00:00:00+00:00",
        seconds=1,
        environment={},
        copy_bandwidth=bw,
        matmul=mm,
    )


def test_report_of_old_records_computes_their_work_but_never_this_machines_calibration(tmp_path, monkeypatch):
    """Records written before the roofline section existed (the fixture's records without it): the report
    computes FLOPs, bytes and achieved rates from the records. Their run stored no calibration, so they get no
    efficiency, also when the machine building the report has a calibration for that device (docs/roofline.md)."""
    from bench.report import write_report

    old = tmp_path / "cpu-1thread"
    old.mkdir()
    shutil.copyfile(FIXTURES / "cpu-1thread" / "environment.json", old / "environment.json")
    lines = (FIXTURES / "cpu-1thread" / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    (old / "results.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "roofline"}) + "\n" for r in records)
    )
    for cache in ("empty", "calibrated"):
        monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / cache))
        if cache == "calibrated":
            calibrate.save(_fake_calibration("AMD EPYC", 1))
        files = write_report([old], tmp_path / f"report-{cache}")
        md = files.markdown.read_text()
        assert "| efficiency |" not in md and "\n### Roofline\n" in md and "Calibrated ceiling of" not in md
        assert (
            "`cpu-1thread`: no calibrated efficiency for" in md
            and "stored no calibration for AMD EPYC with 1 torch threads" in md
        )
        assert "Roofline: achieved FLOP/s vs arithmetic intensity: skipped: no calibration for AMD EPYC" in md
        assert "Records written before the roofline section existed" in md
        section = md.split("## tiny-gpt2 · text-generation · cpu (AMD EPYC)\n")[-1].split("\n## ")[0]
        (decode,) = [line for line in section.splitlines() if line.startswith("| eager | fp32 | 1 | decode |")]
        # tiny-gpt2 fp32, batch 1, prompt 16, 4 new: weights but wpe + KV of 16 + 4/2 = 18 positions
        decode_bytes = (198_400 - 512 * 64) * 4 + 2 * 2 * 4 * 16 * 18 * 4
        assert f"| {decode_bytes / 1e3:.3g} kB |" in decode, decode
