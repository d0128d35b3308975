"""Export to ONNX with PyTorch's own exporter (`torch.onnx.export(dynamo=True)`), one function per kind of model.

Each exporter writes the graph(s) of one cache entry (docs/backends.md, "ONNX Runtime"): `model.onnx` (+ its
external data) for a causal LM or an encoder, `text_encoder/`, `unet/` and `vae_decoder/` for a diffusion
pipeline. It traces the model the worker built (its weights, dtype and device), so the graph carries exactly
the weights every other backend runs. Inputs and outputs have fixed names (runtime.py feeds them):

- causal LM: `input_ids`, `attention_mask` [batch, past + seq], `past.{i}.key|value` → `logits` (last position
  only, as `generate` asks of a torch model with `logits_to_keep=1`), `present.{i}.key|value`; batch, seq and
  past dynamic, so one graph runs the prefill (past of length 0) and every decode step.
- encoder: `input_ids`, `attention_mask` [, `token_type_ids`] → `last_hidden_state`; batch and seq dynamic.
- diffusion: text encoder `input_ids` → `last_hidden_state`; UNet `sample`, `timestep`, `encoder_hidden_states`
  → `out_sample`; VAE decoder `latent_sample` → `sample`; batch dynamic, image size fixed by the example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OPSET_DEFAULT = None  # None: torch.onnx's default opset (part of the cache key through `opset`)


def _export(module: Any, args: tuple, path: Path, input_names, output_names, dynamic_shapes, opset) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"opset_version": opset} if opset else {}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            external_data=True,
            optimize=True,
            verbose=False,
            **kwargs,
        )


# --- causal LM -----------------------------------------------------------------------------------------------


class _CausalLMStep:
    """(input_ids, attention_mask, *past) -> (logits of the last position, *present): the whole forward of one
    generate step with the KV cache passed in and out explicitly (DynamicCache inside the traced region)."""

    @staticmethod
    def module(model: Any):
        import torch
        from transformers import DynamicCache

        from bench.models.compat import cache_kwarg, output_cache

        kw = cache_kwarg(model)
        layers = model.config.get_text_config(decoder=True).num_hidden_layers

        class Step(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, *past):
                cache = DynamicCache(config=self.model.config)
                for i in range(layers):
                    cache.update(past[2 * i], past[2 * i + 1], i)
                out = self.model(
                    input_ids=input_ids, attention_mask=attention_mask, use_cache=True, logits_to_keep=1, **{kw: cache}
                )
                present = []
                for layer in output_cache(out).layers:
                    present += [layer.keys, layer.values]
                return (out.logits, *present)

        return Step(), layers


def kv_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return past, [p.replace("past.", "present.") for p in past]


def export_causal_lm(model: Any, out: Path, device: Any, opset: int | None) -> dict[str, Any]:
    import torch

    step, layers = _CausalLMStep.module(model)
    vocab = model.config.get_text_config(decoder=True).vocab_size
    gen = torch.Generator().manual_seed(0)
    batch, seq, past_len = 2, 3, 4  # distinct sizes > 1: the exporter keeps every dimension dynamic
    with torch.no_grad():  # the cache's shapes and dtype, from the model itself
        from transformers import DynamicCache

        from bench.models.compat import cache_kwarg, output_cache

        warm = model(
            input_ids=torch.randint(0, vocab, (batch, past_len), generator=gen).to(device),
            use_cache=True,
            **{cache_kwarg(model): DynamicCache(config=model.config)},
        )
        past = [t for layer in output_cache(warm).layers for t in (layer.keys, layer.values)]
    ids = torch.randint(0, vocab, (batch, seq), generator=gen).to(device)
    mask = torch.ones(batch, past_len + seq, dtype=torch.long, device=device)
    b, s, t = (torch.export.Dim(n, min=1) for n in ("batch", "seq", "total"))
    p = torch.export.Dim("past", min=0)  # 0: the prefill
    past_names, present_names = kv_names(layers)
    _export(
        step,
        (ids, mask, *past),
        out / "model.onnx",
        ["input_ids", "attention_mask", *past_names],
        ["logits", *present_names],
        {"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: t}, "past": tuple({0: b, 2: p} for _ in past)},
        opset,
    )
    model.config.save_pretrained(out)
    return {"layers": layers, "kv_heads": past[0].shape[1], "head_dim": past[0].shape[3], "dtype": str(past[0].dtype)}


# --- encoder --------------------------------------------------------------------------------------------------


def encoder_inputs(config: Any) -> list[str]:
    names = ["input_ids", "attention_mask"]
    return names + ["token_type_ids"] if getattr(config, "type_vocab_size", 0) else names


def export_encoder(model: Any, out: Path, device: Any, opset: int | None) -> dict[str, Any]:
    import torch

    names = encoder_inputs(model.config)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    batch, seq = 2, 5
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen).to(device)
    example = [ids, torch.ones_like(ids), torch.zeros_like(ids)][: len(names)]
    b, s = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=1)
    _export(
        Encoder(),
        tuple(example),
        out / "model.onnx",
        names,
        ["last_hidden_state"],
        {"inputs": tuple({0: b, 1: s} for _ in names)},
        opset,
    )
    model.config.save_pretrained(out)
    return {"inputs": names}


# --- diffusion pipeline ---------------------------------------------------------------------------------------


def export_diffusion(pipe: Any, out: Path, device: Any, opset: int | None, height: int, width: int) -> dict[str, Any]:
    """The text encoder, the UNet and the VAE decoder of a StableDiffusionPipeline, at one image size."""
    import torch

    text_encoder, unet, vae = pipe.text_encoder, pipe.unet, pipe.vae
    dtype = unet.dtype
    b = torch.export.Dim("batch", min=1)
    tokens = text_encoder.config.max_position_embeddings

    class TextEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = text_encoder

        def forward(self, input_ids):
            return self.m(input_ids).last_hidden_state

    ids = torch.zeros(2, tokens, dtype=torch.long, device=device)
    _export(
        TextEncoder(),
        (ids,),
        out / "text_encoder" / "model.onnx",
        ["input_ids"],
        ["last_hidden_state"],
        {"input_ids": {0: b}},
        opset,
    )

    class UNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.m(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    lh, lw = height // factor, width // factor
    sample = torch.zeros(2, unet.config.in_channels, lh, lw, dtype=dtype, device=device)
    timestep = torch.tensor(1.0, dtype=torch.float32, device=device)  # float: every scheduler's timesteps fit
    hidden = torch.zeros(2, tokens, text_encoder.config.hidden_size, dtype=dtype, device=device)
    _export(
        UNet(),
        (sample, timestep, hidden),
        out / "unet" / "model.onnx",
        ["sample", "timestep", "encoder_hidden_states"],
        ["out_sample"],
        {"sample": {0: b}, "timestep": None, "encoder_hidden_states": {0: b}},
        opset,
    )

    class VaeDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = vae

        def forward(self, latent_sample):
            return self.m.decode(latent_sample, return_dict=False)[0]

    latent = torch.zeros(2, vae.config.latent_channels, lh, lw, dtype=dtype, device=device)
    _export(
        VaeDecoder(),
        (latent,),
        out / "vae_decoder" / "model.onnx",
        ["latent_sample"],
        ["sample"],
        {"latent_sample": {0: b}},
        opset,
    )
    return {
        "height": height,
        "width": width,
        "latent": [lh, lw],
        "latent_channels": vae.config.latent_channels,
        "tokens": tokens,
        "text_hidden": text_encoder.config.hidden_size,
    }
