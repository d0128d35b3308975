"""The model under test is in the state a user's model is in: parameters as `from_pretrained` leaves them (an
oracle built by plain transformers calls), eval mode, and called under inference mode, for every backend and
precision this machine runs."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from bench import models
from bench.backends import BACKENDS
from bench.measure.timing import make_clock
from bench.scenario import PRECISIONS, load_scenario
from bench.workloads.text_generation import TextGeneration

from conftest import REPO, tiny_scenario


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """tiny-gpt2 saved by plain transformers calls: what a user's checkpoint directory holds."""
    path = tmp_path_factory.mktemp("saved") / "tiny-gpt2"
    config = AutoConfig.for_model(**json.loads((REPO / "bench/models/configs/tiny-gpt2.json").read_text()))
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


def user_state(saved, dtype):
    user = AutoModelForCausalLM.from_pretrained(saved, dtype=dtype)  # what every transformers user starts from
    return user.training, {n: p.requires_grad for n, p in user.named_parameters()}


def suite_state(model):
    return model.training, {n: p.requires_grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("weights", ["random", "pretrained"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_built_model_matches_from_pretrained(saved, weights, dtype):
    ref = (
        models.ModelRef("tiny-gpt2", weights, "directory", str(saved))
        if weights == "pretrained"
        else models.resolve("tiny-gpt2")
    )
    built = models.build(ref, TextGeneration.model_class(), dtype, "cpu", seed=0)
    training, grads = suite_state(built)
    user_training, user_grads = user_state(saved, dtype)
    assert training is user_training is False
    assert grads == user_grads and all(grads.values())  # from_pretrained leaves requires_grad on


CASES = [  # every in-process backend (endpoint runs no model here: its server holds it)
    (b, p)
    for b in BACKENDS
    for p in PRECISIONS
    if not getattr(BACKENDS[b], "remote", False) and BACKENDS[b].unsupported_reason("text-generation", p, "cpu") is None
]


@pytest.mark.parametrize("backend,precision", CASES)
def test_model_as_run_by_every_backend(tmp_path, saved, backend, precision):
    """After the backend prepared it: floating-point parameters keep from_pretrained's requires_grad (quantized
    weights are whatever torchao makes them); the eager call runs under inference mode."""
    from torchao.utils import TorchAOBaseTensor

    (spec,) = load_scenario(tiny_scenario(tmp_path / "s.yaml", precision=f"[{precision}]")).run_specs(device="cpu")
    spec = spec.model_copy(update={"backend": backend})
    impl = BACKENDS[backend]({})
    dtype = impl.load_dtype(precision, "cpu")
    model = TextGeneration.build(models.resolve("tiny-gpt2"), dtype, torch.device("cpu"), seed=0)
    _, user_grads = user_state(saved, dtype)
    if backend == "onnxruntime":  # the runtime holds no torch parameters: what it exports from is checked
        assert suite_state(model) == (False, user_grads)
        return
    prepared = impl.prepare(model, spec, torch.device("cpu"))
    assert model.training is False
    floating = {
        n: p.requires_grad
        for n, p in model.named_parameters()
        if not isinstance(p, TorchAOBaseTensor) and not isinstance(getattr(p, "data", None), TorchAOBaseTensor)
    }
    assert floating and floating == {n: user_grads[n] for n in floating if n in user_grads}
    assert all(floating.values())
    if backend != "eager":
        return  # compiling the decode step takes minutes here; its prefill is this same eager call
    seen = []
    model.transformer.h[0].register_forward_hook(
        lambda *_: seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
    )
    workload = TextGeneration(spec, torch.device("cpu"), make_clock(torch.device("cpu")))
    workload.prepare_inputs(prepared.runnable)
    workload.call(prepared.runnable)
    assert seen and set(seen) == {(True, False)}
