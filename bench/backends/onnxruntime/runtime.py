"""What the workloads call on ONNX Runtime: objects that look like the torch model they replace and run the
exported graphs (graphs.py) in onnxruntime sessions.

- `OrtCausalLM`: a transformers `GenerationMixin` model, so `generate` is transformers' own loop (the same
  logits processors, stopping criteria and streamer as eager), with the KV cache fed to and read from the
  session explicitly at every step (held in the DynamicCache `generate` creates).
- `OrtEncoder`: `model(**inputs).last_hidden_state`.
- `ort_pipeline`: the diffusers pipeline the worker built, its text encoder, UNet and VAE replaced by modules
  that run their sessions (scheduler, guidance and post-processing stay diffusers').

`SessionRunner` moves tensors in and out: on the CPU through numpy without copies; on CUDA with IO binding
(inputs and outputs bound to torch's device memory, nothing through the host) unless `io_binding: false`.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


class SessionRunner:
    def __init__(self, session: Any, device: Any, io_binding: bool):
        self.session, self.device, self.io_binding = session, device, io_binding
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def __call__(self, feeds: dict[str, Any], out_shapes: dict[str, tuple[int, ...]], out_dtype: Any) -> dict[str, Any]:
        """Run with torch tensors in `feeds`; outputs as torch tensors on the device. `out_shapes` gives each
        output's shape (needed to bind device memory); `out_dtype` the float outputs' dtype."""
        import torch

        if self.io_binding:
            binding = self.session.io_binding()
            for name, t in feeds.items():
                t = t.contiguous()
                feeds[name] = t  # keep it alive until the run
                binding.bind_input(
                    name, self.device.type, self.device.index or 0, _np_dtype(t.dtype), tuple(t.shape), t.data_ptr()
                )
            outs = {}
            for name in self.output_names:
                t = torch.empty(out_shapes[name], dtype=out_dtype, device=self.device)
                outs[name] = t
                binding.bind_output(
                    name, self.device.type, self.device.index or 0, _np_dtype(t.dtype), tuple(t.shape), t.data_ptr()
                )
            binding.synchronize_inputs()
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return outs
        arrays = {name: t.detach().contiguous().cpu().numpy() for name, t in feeds.items()}
        results = self.session.run(self.output_names, arrays)
        return {
            name: torch.from_numpy(np.ascontiguousarray(r)).to(self.device)
            for name, r in zip(self.output_names, results)
        }


def _np_dtype(dtype: Any):
    import torch

    return {
        torch.float32: np.float32,
        torch.float16: np.float16,
        torch.int64: np.int64,
        torch.int32: np.int32,
        torch.bool: np.bool_,
    }[dtype]


class _OrtModule:
    """What the callers read of a torch module besides calling it: device, dtype, config."""

    def __init__(self, runner: SessionRunner, config: Any, dtype: Any):
        self.runner, self.config, self._dtype = runner, config, dtype

    @property
    def device(self):
        return self.runner.device

    @property
    def dtype(self):
        return self._dtype


def _torch_module_type():
    import torch

    class OrtTorchModule(torch.nn.Module):
        """A parameter-free torch module whose forward runs a session (a diffusers pipeline holds modules)."""

        def __init__(self, runner: SessionRunner, config: Any, dtype: Any):
            super().__init__()
            self.runner, self._config, self._dtype = runner, config, dtype

        @property
        def config(self):
            return self._config

        @property
        def device(self):
            return self.runner.device

        @property
        def dtype(self):
            return self._dtype

    return OrtTorchModule


# --- causal LM --------------------------------------------------------------------------------------------------


def ort_causal_lm(runner: SessionRunner, config: Any, generation_config: Any, dtype: Any, meta: dict[str, Any]):
    from transformers import GenerationMixin, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from bench.backends.onnxruntime.graphs import kv_names
    from bench.models.compat import output_with_cache

    past_names, present_names = kv_names(meta["layers"])

    class OrtCausalLM(PreTrainedModel, GenerationMixin):
        """A parameter-free PreTrainedModel (what `generate` reads of a model) whose forward runs the session."""

        main_input_name = "input_ids"
        _supports_sdpa = True  # what the config names (the graph has its attention built in); init checks it

        def __init__(self):
            super().__init__(copy.deepcopy(config))  # PreTrainedModel's init adjusts its config: not the caller's
            self.generation_config = generation_config
            self._runner, self._dtype = runner, dtype

        @property
        def device(self):
            return runner.device

        @property
        def dtype(self):
            return dtype

        def _supports_logits_to_keep(self) -> bool:
            return False  # the graph already returns the last position only

        def get_output_embeddings(self):
            return None

        def prepare_inputs_for_generation(self, input_ids, *args, attention_mask=None, **kwargs):
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            seen = cache.get_seq_length() if cache is not None else 0
            return {"input_ids": input_ids[:, seen:], "attention_mask": attention_mask, "cache": cache}

        def forward(self, input_ids, attention_mask=None, cache=None, past_key_values=None, **_):
            import torch

            cache = cache if cache is not None else past_key_values
            batch, seq = input_ids.shape
            seen = cache.get_seq_length() if cache is not None else 0
            if attention_mask is None:
                attention_mask = torch.ones(batch, seen + seq, dtype=torch.long, device=input_ids.device)
            feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
            layers = cache.layers if cache is not None else []
            empty = torch.empty(batch, meta["kv_heads"], 0, meta["head_dim"], dtype=dtype, device=input_ids.device)
            for i in range(meta["layers"]):
                layer = layers[i] if i < len(layers) and layers[i].is_initialized else None
                feeds[past_names[2 * i]] = layer.keys if layer is not None else empty
                feeds[past_names[2 * i + 1]] = layer.values if layer is not None else empty
            kv = (batch, meta["kv_heads"], seen + seq, meta["head_dim"])
            shapes = {"logits": (batch, 1, self.config.get_text_config(decoder=True).vocab_size)}
            shapes.update({n: kv for n in present_names})
            out = runner(feeds, shapes, dtype)
            if cache is not None:
                for i in range(meta["layers"]):
                    layer = cache.layers[i]
                    k, v = out[present_names[2 * i]], out[present_names[2 * i + 1]]
                    if not layer.is_initialized:
                        layer.lazy_initialization(k, v)
                    layer.keys, layer.values = k, v
            return output_with_cache(CausalLMOutputWithPast, cache, logits=out["logits"])

    return OrtCausalLM()


# --- encoder ----------------------------------------------------------------------------------------------------


def ort_encoder(runner: SessionRunner, config: Any, dtype: Any):
    from transformers.modeling_outputs import BaseModelOutput

    class OrtEncoder(_OrtModule):
        def __call__(self, **inputs):
            ids = inputs["input_ids"]
            feeds = {name: inputs[name] for name in runner.input_names}
            shape = (*ids.shape, self.config.hidden_size)
            return BaseModelOutput(
                last_hidden_state=runner(feeds, {"last_hidden_state": shape}, dtype)["last_hidden_state"]
            )

    return OrtEncoder(runner, config, dtype)


# --- diffusion pipeline -------------------------------------------------------------------------------------------


def ort_pipeline(pipe: Any, runners: dict[str, SessionRunner], dtype: Any, meta: dict[str, Any]):
    """`pipe` with its text encoder, UNet and VAE decoder running `runners` (keyed by component)."""
    import torch

    Base = _torch_module_type()
    lh, lw = meta["latent"]

    class TextEncoder(Base):
        def forward(self, input_ids, *args, **kwargs):
            shape = (*input_ids.shape, self.config.hidden_size)
            return (self.runner({"input_ids": input_ids}, {"last_hidden_state": shape}, dtype)["last_hidden_state"],)

    class UNet(Base):
        def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False, **_):
            t = torch.as_tensor(timestep, device=sample.device).to(torch.float32).reshape(())
            feeds = {"sample": sample, "timestep": t, "encoder_hidden_states": encoder_hidden_states}
            return (self.runner(feeds, {"out_sample": tuple(sample.shape)}, dtype)["out_sample"],)

    class VaeDecoder(Base):
        def decode(self, z, return_dict=False, generator=None):
            f = 2 ** (len(self.config.block_out_channels) - 1)
            shape = (z.shape[0], self.config.out_channels, z.shape[2] * f, z.shape[3] * f)
            return (self.runner({"latent_sample": z}, {"sample": shape}, dtype)["sample"],)

    from diffusers import StableDiffusionPipeline

    new = StableDiffusionPipeline(
        vae=VaeDecoder(runners["vae_decoder"], pipe.vae.config, dtype),
        text_encoder=TextEncoder(runners["text_encoder"], pipe.text_encoder.config, dtype),
        tokenizer=None,
        unet=UNet(runners["unet"], pipe.unet.config, dtype),
        scheduler=pipe.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    new.set_progress_bar_config(disable=True)
    new.expected_latent = (lh, lw)
    return new
