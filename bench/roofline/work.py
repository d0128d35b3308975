"""Analytic FLOPs and bytes of one measured unit of work (decode step, prefill, encoder forward, denoising
step), from the model's config (a meta-device build) and the run. FLOPs are the useful work and bytes the
unavoidable traffic; the formulas and what is left out: docs/roofline.md, "The work of a measured unit"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from bench.roofline.schema import Phase


@dataclass(frozen=True)
class ModelShape:
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    parameters: int  # all parameters, a tied one once
    per_token_matmul_params: int
    per_sequence_matmul_params: int  # output projection + pooler
    output_params: int  # the output projection (0 for an encoder)
    lookup_params: int  # embedding tables that are only indexed
    tied_output: bool  # the output projection is the token embedding table


def model_shape(config: Any, model_class: Any) -> ModelShape:
    """The shape of `model_class` built from `config` on the meta device (cached per config)."""
    return _shape(json.dumps(config.to_dict(), sort_keys=True, default=str), model_class)


@lru_cache(maxsize=32)
def _shape(config_json: str, model_class: Any) -> ModelShape:
    import torch
    from transformers import AutoConfig

    data = json.loads(config_json)
    config = AutoConfig.for_model(**data)
    with torch.device("meta"):
        model = model_class.from_config(config)
    model.tie_weights()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    output_weight = output.weight if output is not None else None
    tables = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    lookup = sum(w.numel() for w in tables if w is not output_weight)
    pooler = sum(p.numel() for name, p in model.named_parameters() if p.ndim >= 2 and ".pooler." in f".{name}")
    output_params = output_weight.numel() if output_weight is not None else 0
    matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2)  # a tied table once
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(
        layers=config.num_hidden_layers,
        attention_heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        hidden_size=config.hidden_size,
        parameters=sum(p.numel() for p in model.parameters()),
        per_token_matmul_params=matrices - lookup - output_params - pooler,
        per_sequence_matmul_params=output_params + pooler,
        output_params=output_params,
        lookup_params=lookup,
        tied_output=output_weight is not None and any(w is output_weight for w in tables),
    )


def weights_read_bytes(shape: ModelShape, weight_bytes: int, float_bytes: int, head_quantized: bool) -> float:
    """Bytes of weights a forward reads in full: all of them but the lookup tables (one row each). When a
    tied LM head was quantized into its own copy, the float token table is left as a lookup only."""
    lookup = shape.lookup_params + (shape.output_params if head_quantized and shape.tied_output else 0)
    return weight_bytes - lookup * float_bytes


def decode_step(
    shape: ModelShape,
    batch: int,
    prompt: int,
    new: int,
    weights_bytes: float,
    kv_bytes: int,
    dtype: str,
    seconds: float,
    timed_by: str,
) -> Phase:
    context = prompt + new / 2
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * context * kv_bytes * batch
    matmul = 2 * (shape.per_token_matmul_params + shape.per_sequence_matmul_params) * batch
    attention = 4 * shape.layers * shape.attention_heads * shape.head_dim * context * batch
    return _phase(
        "one decode step: one new token for each sequence of the batch",
        matmul + attention,
        weights_bytes + kv,
        {
            "matmul_flops": matmul,
            "attention_flops": attention,
            "weights_bytes": weights_bytes,
            "kv_cache_read_bytes": kv,
            "mean_context_tokens": context,
        },
        dtype,
        seconds,
        timed_by,
    )


def prefill(
    shape: ModelShape,
    batch: int,
    prompt: int,
    weights_bytes: float,
    kv_bytes: int,
    dtype: str,
    seconds: float,
    timed_by: str,
) -> Phase:
    matmul = 2 * shape.per_token_matmul_params * batch * prompt + 2 * shape.per_sequence_matmul_params * batch
    attention = 4 * shape.layers * shape.attention_heads * shape.head_dim * batch * prompt * (prompt + 1) / 2
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * prompt * kv_bytes * batch
    return _phase(
        "prefill: the whole prompt of every sequence, up to the first new token",
        matmul + attention,
        weights_bytes + kv,
        {
            "matmul_flops": matmul,
            "attention_flops": attention,
            "weights_bytes": weights_bytes,
            "kv_cache_write_bytes": kv,
        },
        dtype,
        seconds,
        timed_by,
    )


def encoder_forward(
    shape: ModelShape,
    batch: int,
    length: int,
    weights_bytes: float,
    act_bytes: int,
    dtype: str,
    seconds: float,
    timed_by: str,
) -> Phase:
    matmul = 2 * shape.per_token_matmul_params * batch * length + 2 * shape.per_sequence_matmul_params * batch
    attention = 4 * shape.layers * shape.attention_heads * shape.head_dim * batch * length * length
    out = batch * length * shape.hidden_size * act_bytes
    return _phase(
        "one forward over the batch",
        matmul + attention,
        weights_bytes + out,
        {"matmul_flops": matmul, "attention_flops": attention, "weights_bytes": weights_bytes, "output_bytes": out},
        dtype,
        seconds,
        timed_by,
    )


def _phase(
    unit: str, flops: float, nbytes: float, terms: dict[str, float], dtype: str, seconds: float, timed_by: str
) -> Phase:
    return Phase(
        unit=unit,
        flops=flops,
        bytes=nbytes,
        terms=terms,
        timed_by=timed_by,
        seconds=seconds,
        compute_dtype=dtype,
        arithmetic_intensity_flops_per_byte=flops / nbytes,
        achieved_flops_per_s=flops / seconds,
        achieved_bytes_per_s=nbytes / seconds,
    )


def unet_step(
    unet_config: dict[str, Any],
    latents: int,
    height: int,
    width: int,
    text_tokens: int,
    unet_bytes: float,
    act_bytes: int,
    dtype: str,
    seconds: float,
    timed_by: str,
) -> Phase:
    """One denoising step: a UNet forward on `latents` latent images of height × width."""
    flops, by_op = unet_flops(json.dumps(unet_config, sort_keys=True), latents, height, width, text_tokens)
    channels, cross = unet_config.get("in_channels", 4), unet_config.get("cross_attention_dim", 768)
    io = (2 * latents * channels * height * width + latents * text_tokens * cross) * act_bytes
    return _phase(
        f"one denoising step: a UNet forward on {latents} latent(s) of {height}×{width}",
        flops,
        unet_bytes + io,
        {
            "conv_and_linear_flops": by_op["conv_and_linear"],
            "attention_flops": by_op["attention"],
            "weights_bytes": unet_bytes,
            "activation_bytes": io,
        },
        dtype,
        seconds,
        timed_by,
    )


@lru_cache(maxsize=16)
def unet_flops(config_json: str, latents: int, height: int, width: int, text_tokens: int) -> tuple[float, dict]:
    """FLOPs of one UNet forward, counted by torch.utils.flop_counter on the meta device (no memory)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = {k: v for k, v in json.loads(config_json).items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config).eval()
        sample = torch.empty(latents, config.get("in_channels", 4), height, width)
        timestep = torch.full((latents,), 10)
        text = torch.empty(latents, text_tokens, config.get("cross_attention_dim", 768))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        unet(sample, timestep, encoder_hidden_states=text)
    ops = {str(op).split(".")[1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = ops.get("bmm", 0) + sum(n for op, n in ops.items() if "scaled_dot_product" in op)
    return float(counter.get_total_flops()), {
        "attention": float(attention),
        "conv_and_linear": float(counter.get_total_flops() - attention),
    }


def unet_parameters(unet_config: dict[str, Any]) -> int:
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config({k: v for k, v in unet_config.items() if not k.startswith("_")})
    return sum(p.numel() for p in unet.parameters())
