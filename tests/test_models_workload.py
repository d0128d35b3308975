import time

import pytest
import torch

from bench import models
from bench.measure.timing import HostClock
from bench.scenario import load_scenario
from bench.worker import quality
from bench.workloads.text_generation import TextGeneration

from conftest import tiny_scenario


def build(name, seed=0, dtype=torch.float32):
    return models.build(models.resolve(name), TextGeneration.model_class(), dtype, torch.device("cpu"), seed)


def test_random_weights_are_seeded_and_tied():
    a, b, c = build("tiny-gpt2", 0), build("tiny-gpt2", 0), build("tiny-gpt2", 1)
    for (n, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), n
        if pa.ndim >= 2:
            assert not torch.equal(pa, pc), n
            assert 0.015 < pa.std().item() < 0.025, n
    assert a.lm_head.weight is a.transformer.wte.weight
    assert not a.training  # requires_grad stays as from_pretrained leaves it: tests/test_model_state.py


def test_parameter_count_matches_hand_computation():
    # tiny-gpt2: vocab 1024, positions 512, width 64, 2 layers, tied head
    d, v, p, layers = 64, 1024, 512, 2
    per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    expected = v * d + p * d + layers * per_layer + 2 * d
    config = models.load_config(models.resolve("tiny-gpt2"))
    assert models.parameter_count(config, TextGeneration.model_class()) == expected
    assert sum(x.numel() for x in build("tiny-gpt2").parameters()) == expected


def test_dtype_honoured():
    assert build("tiny-llama", dtype=torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_precision_gets_the_fp32_weights_rounded(dtype):
    """Fidelity compares a bf16 run with the fp32 reference: they must be the same model."""
    fp32, low = build("tiny-llama"), build("tiny-llama", dtype=dtype)
    for (n, a), (_, b) in zip(fp32.named_parameters(), low.named_parameters()):
        assert torch.equal(a.to(dtype), b), n


def test_pretrained_missing_fails_clearly():
    with pytest.raises(models.ModelNotFound, match="no pretrained weights"):
        models.resolve("tiny-gpt2", "pretrained")
    ref = models.resolve("gpt2", "pretrained")
    assert ref.kind == "hub" and ref.location == "openai-community/gpt2"
    with pytest.raises(models.ModelNotFound, match="not in the local hub cache"):
        models.load_config(ref)


def test_generation_call_is_exact_and_ordered(tmp_path):
    ls = load_scenario(tiny_scenario(tmp_path / "t.yaml", model="tiny-llama", batch="[3]"))
    (run,) = ls.run_specs(device="cpu")
    model = build("tiny-llama")
    w = TextGeneration(run, torch.device("cpu"), HostClock())
    w.prepare_inputs(model)
    assert w.input_ids.shape == (3, 8)
    assert not torch.isin(w.input_ids, torch.tensor([1, 2])).any()  # no bos/eos inside the prompt
    t0 = time.perf_counter()  # a second clock around the three calls
    calls = [w.call(model) for _ in range(3)]
    wall_s = time.perf_counter() - t0
    assert sum(c["latency_s"] for c in calls) <= wall_s
    assert w.last_output.shape == (3, 12)
    for c in calls:
        assert 0 < c["ttft_s"] < c["latency_s"] and len(c["itl_s"]) == 3
    m = w.metrics(calls)
    assert m.tpot_s.count == 3 and m.output_tokens_per_s > 0
    # Same seed, same prompt: a second workload sees identical inputs.
    w2 = TextGeneration(run, torch.device("cpu"), HostClock())
    w2.prepare_inputs(model)
    assert torch.equal(w.input_ids, w2.input_ids)


def test_generation_metrics_by_hand(tmp_path):
    """Two hand-made calls (batch 3, 8 prompt tokens, 4 new tokens): latencies 1.0 s and 0.7 s, TTFTs 0.4 s
    and 0.1 s. TPOT = 0.6 s / 3 gaps = 0.2 s for both; 12 output tokens per call over a mean latency of
    0.85 s = 14.1176 tokens/s; 24 prompt tokens over a mean TTFT of 0.25 s = 96 tokens/s; 9 decode tokens
    over a mean decode time of 0.6 s = 15 tokens/s."""
    ls = load_scenario(tiny_scenario(tmp_path / "t.yaml", batch="[3]"))
    (run,) = ls.run_specs(device="cpu")
    w = TextGeneration(run, torch.device("cpu"), HostClock())
    calls = [
        {"latency_s": 1.0, "ttft_s": 0.4, "itl_s": [0.1, 0.2, 0.3]},
        {"latency_s": 0.7, "ttft_s": 0.1, "itl_s": [0.2, 0.2, 0.2]},
    ]
    m = w.metrics(calls)
    assert m.tpot_s.samples == [pytest.approx(0.2), pytest.approx(0.2)]
    assert m.itl_s.count == 6 and m.itl_s.max == 0.3
    assert m.output_tokens_per_s == pytest.approx(14.117647, rel=1e-6)
    assert m.prefill_tokens_per_s == pytest.approx(96.0)
    assert m.decode_tokens_per_s == pytest.approx(15.0)
    assert m.requests_per_s == pytest.approx(3 / 0.85)


def test_quality_flags_noise_and_small_samples():
    from bench.measure.stats import Stats
    from bench.workloads.feature_extraction import FeatureExtractionMetrics

    def metrics(samples):
        rate = 1 / float(sum(samples) / len(samples))
        return FeatureExtractionMetrics(latency_s=Stats.of(samples), sequences_per_s=rate, input_tokens_per_s=rate)

    invalid, warnings = quality(metrics([1.0, 1.01, 0.99] * 40), max_cv=0.1)
    assert invalid == [] and warnings == []
    invalid, warnings = quality(metrics([1.0, 2.0, 1.0, 3.0] * 30), max_cv=0.1)
    assert invalid and "coefficient of variation" in invalid[0]
    invalid, warnings = quality(metrics([1.0, 1.01, 1.0, 1.0, 1.02]), max_cv=0.1)
    assert invalid == [] and "do not resolve p90, p95, p99" in warnings[0]
    invalid, _ = quality(metrics([1.0, 1.0]), max_cv=0.1)
    assert "at least 3" in invalid[0]
