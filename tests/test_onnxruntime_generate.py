"""The onnxruntime backend in process, against an independent oracle: transformers' own greedy `generate` on the
torch model. The backend's prepare() exports the bundled GPT-2-shaped and Llama-shaped tiny models with
torch.onnx (dynamo) and hands back a runnable whose `generate` must produce the same tokens (and logits within
float rounding) as eager; an encoder's hidden states and a diffusion pipeline's image match eager the same
way. Also: transformers' continuous-batching API of the installed release runs a tiny model on the CPU."""

from __future__ import annotations

import textwrap

import pytest
import torch

from bench.backends import BACKENDS
from bench.scenario import load_scenario
from bench.workloads import WORKLOADS

SCENARIO = """
name: parity
task: {task}
model: {{name: {model}}}
device: cpu
matrix: {{backend: [onnxruntime], precision: [fp32], batch_size: [2]}}
workload: {workload}
"""


def _prepare(tmp_path, monkeypatch, task: str, model: str, workload: str):
    """(the torch model the worker builds, a second identical one handed to the backend, the prepared runnable)"""
    from bench import models

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SCENARIO.format(task=task, model=model, workload=workload)))
    (run,) = load_scenario(path).run_specs(device="cpu")
    device = torch.device("cpu")
    workload_cls = WORKLOADS[run.task]
    ref = models.resolve(run.model)
    eager = workload_cls.build(ref, torch.float32, device, seed=run.measure.seed)
    backend = BACKENDS["onnxruntime"](run.backend_options)
    exported = workload_cls.build(ref, backend.load_dtype("fp32", "cpu"), device, seed=run.measure.seed)
    prepared = backend.prepare(exported, run, device)
    return run, eager, exported, prepared


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_greedy_tokens_equal_eager_generate(tmp_path, monkeypatch, model):
    run, eager, exported, prepared = _prepare(
        tmp_path, monkeypatch, "text-generation", model, "{prompt_tokens: 12, new_tokens: 10}"
    )
    ort_lm = prepared.runnable
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, eager.config.vocab_size, (2, 12), generator=gen)
    eos = eager.config.eos_token_id
    kw = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    with torch.inference_mode():
        a = eager.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), return_dict_in_generate=True, output_logits=True, **kw
        )
        b = ort_lm.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), return_dict_in_generate=True, output_logits=True, **kw
        )
    assert b.sequences.shape == (2, 22)
    assert torch.equal(a.sequences, b.sequences)
    assert len(a.logits) == len(b.logits) == 10
    for x, y in zip(a.logits, b.logits):
        assert torch.allclose(x, y, atol=1e-4, rtol=1e-4)
    assert prepared.details["export_cache"] == "miss" and prepared.cold_metrics["export_s"] > 0
    # The torch weights were freed (moved to the meta device): the measured memory is onnxruntime's.
    assert all(p.device.type == "meta" for p in exported.parameters())


def test_encoder_hidden_states_equal_eager(tmp_path, monkeypatch):
    run, eager, exported, prepared = _prepare(
        tmp_path, monkeypatch, "feature-extraction", "tiny-bert", "{sequence_length: 16}"
    )
    ids = torch.randint(5, eager.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    with torch.inference_mode():
        a = eager(**inputs).last_hidden_state
        b = prepared.runnable(**inputs).last_hidden_state
    assert a.shape == b.shape == (3, 11, eager.config.hidden_size)  # batch and length other than the export's
    assert torch.allclose(a, b, atol=1e-5)


def test_pipeline_image_equals_eager(tmp_path, monkeypatch):
    workload = "{height: 64, width: 64, num_inference_steps: 3}"
    run, eager, exported, prepared = _prepare(tmp_path, monkeypatch, "text-to-image", "tiny-sd", workload)
    pipe = prepared.runnable
    tokens = eager.text_encoder.config.max_position_embeddings
    ids = torch.randint(5, 90, (2, tokens), generator=torch.Generator().manual_seed(2))

    def image(p):
        with torch.inference_mode():
            prompt, negative = p.text_encoder(ids)[0], p.text_encoder(ids + 1)[0]
            return p(
                prompt_embeds=prompt,
                negative_prompt_embeds=negative,
                height=64,
                width=64,
                num_inference_steps=3,
                guidance_scale=7.5,
                generator=torch.Generator().manual_seed(0),
                output_type="pt",
            ).images

    a, b = image(eager), image(pipe)
    assert a.shape == b.shape == (2, 3, 64, 64)
    assert float((a - b).abs().max()) < 1e-4
    assert prepared.details["onnx_graphs_run"] == [
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_decoder/model.onnx",
    ]


def test_continuous_batching_api_runs_a_tiny_model_on_the_cpu():
    """transformers' continuous batching (the serving issue's `continuous` policy): generate_batch on the CPU
    gives each request exactly its greedy tokens, the same as generate one request at a time."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    from bench import models

    model = models.build(models.resolve("tiny-llama"), AutoModelForCausalLM, torch.float32, torch.device("cpu"))
    prompts = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16, 17]]
    config = GenerationConfig(
        max_new_tokens=5,
        do_sample=False,
        eos_token_id=-1,
        pad_token_id=0,
        num_blocks=16,
        block_size=16,
        max_batch_tokens=64,
    )
    with torch.inference_mode():
        outputs = model.generate_batch(inputs=prompts, generation_config=config)
        expected = [
            model.generate(torch.tensor([p]), max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)[
                0, len(p) :
            ].tolist()
            for p in prompts
        ]
    got = sorted((list(o.prompt_ids), list(o.generated_tokens)) for o in outputs.values())
    assert got == sorted(zip(prompts, expected))
