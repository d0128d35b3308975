"""The onnxruntime backend's TensorRT execution provider, on a machine without CUDA or TensorRT: where it can
run (and the reason where not, as an `unsupported` record), the explicit optimisation profiles it asks for
(hand-computed from the workload), the engine cache key, and the provider check failing a session that fell
back from TensorRT to CUDA. Building and timing engines needs a GPU with TensorRT (docs/testing.md)."""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import pytest

from bench.backends import onnxruntime as ortb
from bench.backends.onnxruntime import tensorrt
from bench.scenario import load_scenario
from bench.sweep import unsupported

CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_where_tensorrt_cannot_run_says_why():
    assert "CUDA devices only" in tensorrt.missing("cpu", "fp32", CUDA)
    assert "onnxruntime's own operators" in tensorrt.missing("cuda", "int8", CUDA)
    assert "onnxruntime's own operators" in tensorrt.missing("cuda", "int8-dyn", CUDA)
    why = tensorrt.missing("cuda", "fp16", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert why.startswith("TensorrtExecutionProvider is not in this onnxruntime build")
    # This machine has no TensorRT: the library itself is what is missing.
    assert tensorrt.library_version()[0] is None
    why = tensorrt.missing("cuda", "fp16", CUDA)
    assert "libnvinfer.so.10 does not load" in why and "pip install tensorrt" in why


def test_a_tensorrt_point_is_recorded_unsupported_before_any_worker(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: trt
            task: text-generation
            model: {name: tiny-gpt2}
            device: cpu
            matrix: {backend: [onnxruntime], precision: [fp32, int8]}
            backend_options: {onnxruntime: {execution_provider: tensorrt}}
            workload: {prompt_tokens: 8, new_tokens: 4}
            """
        )
    )
    specs = load_scenario(path).run_specs(device="cpu")
    assert [unsupported(s) for s in specs] == ["execution_provider tensorrt runs on CUDA devices only"] * 2
    plain = path.read_text().replace("backend_options: {onnxruntime: {execution_provider: tensorrt}}\n", "")
    path.write_text(plain)
    assert [unsupported(s) for s in load_scenario(path).run_specs(device="cpu")] == [None, None]


def _shapes(option: str) -> dict[str, tuple[int, ...]]:
    return {n: tuple(int(d) for d in s.split("x")) for n, s in (p.split(":") for p in option.split(","))}


def test_causal_lm_profiles_cover_the_prefill_and_every_decode_step():
    run = SimpleNamespace(batch_size=2, workload={"prompt_tokens": 12, "new_tokens": 5})
    meta = {"layers": 2, "kv_heads": 4, "head_dim": 16}
    p = tensorrt.profiles("causal-lm-with-past", "model.onnx", meta, run)
    lo, opt, hi = (_shapes(p[f"trt_profile_{k}_shapes"]) for k in ("min", "opt", "max"))
    assert set(lo) == {"input_ids", "attention_mask"} | {f"past.{i}.{kv}" for i in range(2) for kv in ("key", "value")}
    assert lo["input_ids"] == (2, 1) and hi["input_ids"] == (2, 12)  # a decode step .. the prompt
    assert opt["input_ids"] == (2, 1)  # tuned for the decode step, which runs new_tokens - 1 times
    assert lo["past.0.key"] == (2, 4, 0, 16) and hi["past.1.value"] == (2, 4, 17, 16)  # no past .. prompt + new
    assert lo["attention_mask"] == (2, 1) and hi["attention_mask"] == (2, 17)


def test_pipeline_profiles_double_the_unet_batch_under_guidance():
    run = SimpleNamespace(batch_size=3, workload={"height": 64, "width": 64, "guidance_scale": 7.5})
    meta = {"latent": [32, 32], "latent_channels": 4, "tokens": 77, "text_hidden": 32}
    unet = _shapes(tensorrt.profiles("stable-diffusion", "unet/model.onnx", meta, run)["trt_profile_max_shapes"])
    assert unet == {"sample": (6, 4, 32, 32), "encoder_hidden_states": (6, 77, 32)}
    vae = tensorrt.profiles("stable-diffusion", "vae_decoder/model.onnx", meta, run)
    assert _shapes(vae["trt_profile_min_shapes"]) == {"latent_sample": (3, 4, 32, 32)}


def test_tensorrt_is_asked_first_and_a_fallback_to_cuda_fails_the_run():
    trt = {"device_id": "0", "trt_fp16_enable": "1", "trt_engine_cache_enable": "1", "trt_profile_min_shapes": "x:1"}
    requested = ortb.requested_providers(SimpleNamespace(type="cuda", index=0), trt)
    assert [name for name, _ in requested] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    reported = {"TensorrtExecutionProvider": {"device_id": "0", "trt_fp16_enable": "1", "trt_engine_cache_enable": "1"}}
    ortb.check_providers(requested, CUDA, reported, "build")  # profile strings are onnxruntime's to normalise
    with pytest.raises(ortb.ProviderFallback, match="fell back to CUDAExecutionProvider, CPUExecutionProvider"):
        ortb.check_providers(requested, CUDA[1:], {}, "build")
    with pytest.raises(ortb.ProviderFallback, match="trt_fp16_enable=0, not 1"):
        fp32 = {"TensorrtExecutionProvider": {**reported["TensorrtExecutionProvider"], "trt_fp16_enable": "0"}}
        ortb.check_providers(requested, CUDA, fp32, "b")


def test_engine_cache_key_follows_the_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    run = SimpleNamespace(batch_size=1, workload={"sequence_length": 8})
    device = SimpleNamespace(type="cuda", index=0)
    meta = {"inputs": ["input_ids"]}
    a, dir_a = tensorrt.provider_options(device, "fp16", "k1", "model.onnx", "encoder", meta, run, "")
    b, dir_b = tensorrt.provider_options(device, "fp16", "k2", "model.onnx", "encoder", meta, run, "")
    again, dir_again = tensorrt.provider_options(device, "fp32", "k1", "model.onnx", "encoder", meta, run, "")
    assert len({dir_a, dir_b, dir_again}) == 3  # another graph or precision, another entry
    assert a["trt_engine_cache_path"] == dir_a and a["trt_fp16_enable"] == "1" and again["trt_fp16_enable"] == "0"
    assert dir_a.startswith(str(tmp_path / "tensorrt"))
