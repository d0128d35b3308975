"""Output fidelity: how far a run's outputs are from the fp32 eager reference of the same model, inputs and
device (computed once per sweep by `python -m bench.worker --reference`, compared after timing). `primary`: a
[batch, features] float tensor (cosine, abs/rel error, rmse); `tokens` (optional): greedy tokens, position by
position (docs/metrics.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import Fidelity


def save(path: Path, outputs: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu() for k, v in outputs.items()}, tmp
    )
    tmp.replace(path)


def load(path: str | Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def compare(outputs: dict[str, Any], reference: dict[str, Any], output_name: str) -> Fidelity:
    import torch

    x = outputs["primary"].detach().float().cpu()
    ref = reference["primary"].float()
    if x.shape != ref.shape:
        raise ValueError(f"output shape {tuple(x.shape)} differs from the reference's {tuple(ref.shape)}")
    cos = torch.nn.functional.cosine_similarity(x, ref, dim=-1)
    abs_err = (x - ref).abs().max().item()
    scale = ref.abs().max().item()
    fields: dict[str, Any] = dict(
        reference="eager fp32, same weights, inputs and device",
        output=output_name,
        cosine_mean=cos.mean().item(),
        cosine_min=cos.min().item(),
        max_abs_error=abs_err,
        max_rel_error=abs_err / scale if scale else float("inf"),
        rmse=(x - ref).pow(2).mean().sqrt().item(),
    )
    if "tokens" in reference:
        tokens, ref_tokens = outputs["tokens"].cpu(), reference["tokens"]
        same = tokens == ref_tokens
        fields["top1_agreement"] = (x.argmax(-1) == ref.argmax(-1)).float().mean().item()
        fields["token_agreement"] = same.float().mean().item()
        # leading run of matches per row: cumprod stays 1 until the first mismatch
        fields["matched_prefix_tokens"] = same.int().cumprod(dim=1).sum(dim=1).float().mean().item()
    return Fidelity(**fields)
