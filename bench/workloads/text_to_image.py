"""Text to image (Stable Diffusion-shaped): one pipeline call = encode seeded prompt token ids,
`num_inference_steps` UNet steps, VAE decode, with step and decode marks on the call's clock and initial
latents from a seeded CPU generator (docs/scenarios.md, "Tasks: text to image")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from bench.measure.stats import Stats
from bench.models import DiffusionConfig
from bench.workloads.base import Workload
from bench.workloads.metrics import Metric, ReportColumn, WorkloadMetrics


class TextToImageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    height: PositiveInt = 512
    width: PositiveInt = 512
    num_inference_steps: PositiveInt = 20
    guidance_scale: float = Field(7.5, ge=0.0)


class TextToImageMetrics(WorkloadMetrics):
    latency_s: Annotated[
        Stats,
        Metric("s", "lower", "one pipeline call (encode, every step, VAE decode) at the gate's statistic", gated=True),
    ]
    step_s: Annotated[
        Stats, Metric("s", "lower", "each denoising step (UNet + scheduler) at the gate's statistic", gated=True)
    ]
    vae_decode_s: Annotated[Stats, Metric("s", "lower", "VAE decode per call")]
    text_encode_s: Annotated[Stats, Metric("s", "lower", "prompt encoding per call")]
    images_per_s: Annotated[
        float, Metric("images/s", "higher", "images/s at that latency (batch / it)", gated=True, rate_of="latency_s")
    ]
    steps_per_s: Annotated[
        float, Metric("steps/s", "higher", "denoising steps per call / mean latency", rate_of="latency_s")
    ]


class TextToImage(Workload):
    task = "text-to-image"
    Spec = TextToImageSpec
    Metrics = TextToImageMetrics
    primary = "images_per_s"
    report_columns = (ReportColumn("step p50", "step_s", "p50"), ReportColumn("VAE decode p50", "vae_decode_s", "p50"))
    fidelity_output = "decoded image at a fixed seed (pixels in [0, 1])"

    @classmethod
    def model_class(cls):
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline

    @classmethod
    def check_model(cls, spec: TextToImageSpec, config: Any) -> tuple[str, str] | None:
        if not isinstance(config, DiffusionConfig):
            what = getattr(config, "model_type", type(config).__name__)
            return "model.name", f"{what} is not a diffusion pipeline (text-to-image needs unet/vae/text_encoder)"
        factor = 2 ** (len(config["vae"]["block_out_channels"]) - 1)
        for field in ("height", "width"):
            if getattr(spec, field) % (factor * 4):
                return (
                    f"workload.{field}",
                    f"{getattr(spec, field)} is not a multiple of {factor * 4} "
                    f"(VAE factor {factor} × UNet downsampling)",
                )
        return None

    @classmethod
    def parameter_count(cls, config: Any) -> int:
        import torch

        with torch.device("meta"):
            parts = cls._components(config)
        return sum(p.numel() for name, m in parts.items() if name != "scheduler" for p in m.parameters())

    @staticmethod
    def _components(config: DiffusionConfig) -> dict[str, Any]:
        import diffusers
        from transformers import CLIPTextConfig, CLIPTextModel

        def strip(d: dict) -> dict:
            return {k: v for k, v in d.items() if not k.startswith("_")}

        scheduler_cls = getattr(diffusers, config["scheduler"].get("_class_name", "PNDMScheduler"))
        return {
            "unet": diffusers.UNet2DConditionModel.from_config(strip(config["unet"])),
            "vae": diffusers.AutoencoderKL.from_config(strip(config["vae"])),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**strip(config["text_encoder"]))),
            "scheduler": scheduler_cls.from_config(strip(config["scheduler"])),
        }

    @classmethod
    def build(cls, ref: Any, dtype: Any, device: Any, seed: int = 0) -> Any:
        """Random weights: each component is built on the device in fp32 from the global generator seeded
        here (diffusers' own initialisers: a UNet needs its zero-initialised layers to stay stable), then
        cast, so every precision gets the fp32 weights rounded."""
        import torch
        from diffusers import StableDiffusionPipeline

        from bench.models import downloads_allowed

        if ref.weights == "pretrained":
            pipe = StableDiffusionPipeline.from_pretrained(
                ref.location,
                torch_dtype=dtype,
                safety_checker=None,
                requires_safety_checker=False,
                local_files_only=not downloads_allowed(),
            )
        else:
            torch.manual_seed(seed)
            with torch.device(device):
                parts = cls._components(DiffusionConfig.read(Path(ref.location)))
            pipe = StableDiffusionPipeline(
                **parts, tokenizer=None, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        pipe = pipe.to(device=device, dtype=dtype)
        for name in ("unet", "vae", "text_encoder"):
            getattr(pipe, name).eval()  # requires_grad as from_pretrained leaves it (bench.models.build)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @classmethod
    def optimized_module(cls, model: Any) -> Any:
        """What a backend quantizes or compiles: the UNet, where the steps spend their time."""
        return model.unet

    @classmethod
    def weight_modules(cls, model: Any) -> dict[str, Any]:
        return {"unet": model.unet, "vae": model.vae, "text_encoder": model.text_encoder}

    @classmethod
    def energy_units(cls, batch_size: int, spec: dict[str, Any], calls: int) -> dict[str, int]:
        return {"images": calls * batch_size}

    @classmethod
    def roofline(cls, record: Any, config: Any, ctx: Any):
        """One UNet denoising step (both classifier-free guidance batches) at the median step time."""
        from bench.roofline import work

        spec = TextToImageSpec.model_validate(record.workload)
        factor = 2 ** (len(config["vae"].get("block_out_channels", [0])) - 1)
        latents = record.batch_size * (2 if spec.guidance_scale > 1 else 1)
        text_tokens = config["text_encoder"].get("max_position_embeddings", 77)
        if record.quantization is not None:  # the backend quantized the UNet: its bytes as run
            unet_bytes = record.quantization.weight_bytes_after
        elif record.precision.startswith("int8"):
            ctx.notes.append("int8 record without its quantization summary: UNet bytes unknown")
            return None
        else:
            unet_bytes = work.unet_parameters(config["unet"]) * ctx.fbytes
        step = work.unet_step(
            config["unet"],
            latents,
            spec.height // factor,
            spec.width // factor,
            text_tokens,
            unet_bytes,
            ctx.fbytes,
            ctx.compute_dtype,
            record.metrics.step_s.p50,
            "step_s p50",
        )
        return {"step": step}, "step"

    def prepare_inputs(self, runnable: Any) -> None:
        import torch

        config = runnable.text_encoder.config
        gen = torch.Generator().manual_seed(self.run.measure.seed)
        vocab, length = config.vocab_size, config.max_position_embeddings
        special = {config.bos_token_id, config.eos_token_id, config.pad_token_id}
        ids = torch.randint(0, vocab, (2, self.run.batch_size, length), generator=gen)
        for tok in special:
            if isinstance(tok, int):
                ids[ids == tok] = (tok + 2) % vocab
        self.prompt_ids, self.negative_ids = ids[0].to(self.device), ids[1].to(self.device)
        self.details = {
            "inputs": "seeded random prompt token ids (no tokenizer needed)",
            "scheduler": type(runnable.scheduler).__name__,
        }

    def _generate(self, runnable: Any, marks: list | None = None):
        import torch

        s = self.spec
        with torch.inference_mode():
            prompt = runnable.text_encoder(self.prompt_ids)[0]
            negative = runnable.text_encoder(self.negative_ids)[0] if s.guidance_scale > 1 else None
            if marks is not None:
                marks.append(self.clock.mark())

            def on_step_end(pipe, step, timestep, kwargs):
                if marks is not None:
                    marks.append(self.clock.mark())
                return kwargs

            return runnable(
                prompt_embeds=prompt,
                negative_prompt_embeds=negative,
                height=s.height,
                width=s.width,
                num_inference_steps=s.num_inference_steps,
                guidance_scale=s.guidance_scale,
                generator=torch.Generator().manual_seed(self.run.measure.seed),
                output_type="pt",
                callback_on_step_end=on_step_end,
            ).images

    def call(self, runnable: Any) -> dict[str, Any]:
        marks: list = []
        start = self.clock.mark()
        images = self._generate(runnable, marks)
        end = self.clock.mark()
        # The scheduler decides how many UNet steps `num_inference_steps` means (PNDM's PLMS adds one).
        steps = len(runnable.scheduler.timesteps)
        if len(marks) != steps + 1 or images.shape[0] != self.run.batch_size:
            raise RuntimeError(
                f"expected {steps} denoising steps and {self.run.batch_size} images, "
                f"got {len(marks) - 1} steps and {images.shape[0]} images"
            )
        self.details["unet_steps_per_call"] = steps
        times = [self.clock.seconds(start, m) for m in marks]
        return {
            "latency_s": self.clock.seconds(start, end),
            "text_encode_s": times[0],
            "step_s": list(np.diff(times)),
            "vae_decode_s": self.clock.seconds(start, end) - times[-1],
        }

    def fidelity_outputs(self, runnable: Any) -> dict[str, Any]:
        images = self._generate(runnable)
        return {"primary": images.float().flatten(1).cpu()}

    def metrics(self, calls: list[dict[str, Any]]) -> TextToImageMetrics:
        latency = np.array([c["latency_s"] for c in calls])
        return TextToImageMetrics(
            latency_s=Stats.of(latency),
            step_s=Stats.of([x for c in calls for x in c["step_s"]]),
            vae_decode_s=Stats.of([c["vae_decode_s"] for c in calls]),
            text_encode_s=Stats.of([c["text_encode_s"] for c in calls]),
            images_per_s=self.run.batch_size / latency.mean(),
            steps_per_s=len(calls[0]["step_s"]) / latency.mean(),
        )
