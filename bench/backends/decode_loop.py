"""A lean greedy decode loop (gpt-fast style): prefill once, then one compiled decode step per token over a
static KV cache, argmax on the device, exactly `max_new_tokens` tokens.

`DecodeLoop` is called like HF `generate` (the subset the text-generation workload uses): a streamer gets the
prompt, then each new token as a [batch, 1] tensor on the device the moment its step has been issued (so a
CUDA-event clock marks when it exists, without a host synchronisation per token); `return_dict_in_generate`
with `output_logits` returns a `GenerateDecoderOnlyOutput`. Greedy decoding with min_new_tokens ==
max_new_tokens: EOS is masked at every step, as HF's MinNewTokensLengthLogitsProcessor does, so the tokens
equal HF greedy `generate`. No logits processors, stopping criteria or cache bookkeeping run in between.

The prefill runs eagerly (it creates the static cache's tensors, whose addresses the compiled step, and its
CUDA graphs under reduce-overhead, then treat as static); the decode step `model(token, cache_position) ->
(next token, logits)` is compiled whole, with `dynamic=False`.
"""

from __future__ import annotations

import inspect
from typing import Any

from bench.models.compat import cache_kwarg


class DecodeLoop:
    def __init__(self, model: Any, compile_kwargs: dict[str, Any], cuda_graphs: bool = False):
        import torch

        self.model = model
        self.config = model.config
        self.generation_config = model.generation_config
        self._cuda_graphs = cuda_graphs
        params = inspect.signature(model.forward).parameters
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self._cache_kwarg = cache_kwarg(model)
        self._step = torch.compile(self._decode_step, **compile_kwargs)
        self._cache: Any = None
        self._shape: tuple[int, int] | None = None
        self._checked_masks: list[Any] = []  # masks already seen to be all ones (the workload reuses its own)

    def _decode_step(self, token: Any, cache_position: Any, cache: Any, eos: int | None):
        """The compiled region: one forward over the static cache, EOS masked, greedy argmax."""
        logits = self.model(
            input_ids=token, cache_position=cache_position, use_cache=True, **{self._cache_kwarg: cache}, **self._keep
        ).logits[:, -1, :]
        return _greedy(logits, eos), logits

    def _static_cache(self, batch: int, length: int) -> Any:
        """One StaticCache per (batch, length), reset in place between calls: its tensors keep their addresses,
        so the compiled step (and its CUDA graphs) never see a new cache."""
        from transformers import StaticCache

        if self._shape != (batch, length):
            self._cache = StaticCache(config=self.config, max_cache_len=length)
            self._shape = (batch, length)
        else:
            self._cache.reset()
        return self._cache

    def _check_mask(self, attention_mask: Any) -> None:
        if attention_mask is None or any(attention_mask is m for m in self._checked_masks):
            return
        if not bool(attention_mask.all()):
            raise ValueError("generation: loop decodes unpadded prompts only (the attention mask has zeros)")
        self._checked_masks.append(attention_mask)

    def generate(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        *,
        max_new_tokens: int,
        min_new_tokens: int | None = None,
        do_sample: bool = False,
        num_beams: int = 1,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        streamer: Any = None,
        return_dict_in_generate: bool = False,
        output_logits: bool = False,
    ) -> Any:
        import torch

        if do_sample or num_beams != 1 or not use_cache:
            raise ValueError("generation: loop is greedy decoding with a cache (do_sample=False, num_beams=1)")
        if min_new_tokens != max_new_tokens:
            raise ValueError("generation: loop generates exactly max_new_tokens (min_new_tokens must equal it)")
        self._check_mask(attention_mask)
        batch, prompt = input_ids.shape
        new = max_new_tokens
        cache = self._static_cache(batch, prompt + new - 1)  # the last token is never fed back, as in HF
        tokens = torch.empty(batch, new, dtype=input_ids.dtype, device=input_ids.device)
        positions = torch.arange(prompt, prompt + new - 1, device=input_ids.device)
        logits_out = []
        if streamer is not None:
            streamer.put(input_ids)

        logits = self.model(
            input_ids=input_ids,
            use_cache=True,
            **{self._cache_kwarg: cache},
            cache_position=torch.arange(prompt, device=input_ids.device),
            **self._keep,
        ).logits[:, -1, :]
        tokens[:, :1] = _greedy(logits, eos_token_id)
        if output_logits:
            logits_out.append(logits.float().clone())
        if streamer is not None:
            streamer.put(tokens[:, :1])
        for i in range(1, new):
            if self._cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            next_token, logits = self._step(tokens[:, i - 1 : i], positions[i - 1 : i], cache, eos_token_id)
            tokens[:, i : i + 1] = next_token  # copied out before the next replay overwrites the graph's output
            if output_logits:
                logits_out.append(logits.float().clone())
            if streamer is not None:
                streamer.put(tokens[:, i : i + 1])
        if streamer is not None:
            streamer.end()
        sequences = torch.cat([input_ids, tokens], dim=1)
        if not return_dict_in_generate:
            return sequences
        from transformers.generation import GenerateDecoderOnlyOutput

        return GenerateDecoderOnlyOutput(sequences=sequences, logits=tuple(logits_out) if output_logits else None)


def _greedy(logits: Any, eos: int | None) -> Any:
    """argmax over the vocabulary with EOS excluded (every new token is under min_new_tokens)."""
    import torch

    if eos is not None:
        logits = logits.clone()
        logits[:, eos] = -torch.inf
    return logits.argmax(dim=-1, keepdim=True)
