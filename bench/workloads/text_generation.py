"""Text generation: greedy decoding of exactly `new_tokens` after a seeded random prompt of `prompt_tokens`.
One call = one `generate` for the whole batch; a streamer marks TTFT and every inter-token gap on the clock
that times the call."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt

from bench.measure.stats import Stats
from bench.workloads.base import Workload


class TextGenerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_tokens: PositiveInt = 128
    new_tokens: PositiveInt = 64


class _TokenClock:
    """A generate() streamer: the first put() is the prompt, each later one a new token."""

    def __init__(self, clock: Any):
        self.clock = clock
        self.marks: list[Any] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.marks.append(self.clock.mark())

    def end(self) -> None:
        pass


class TextGeneration(Workload):
    task = "text-generation"
    Spec = TextGenerationSpec
    fidelity_output = "logits at the prompt's last position; greedy tokens"

    @classmethod
    def model_class(cls):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    @classmethod
    def check_model(cls, spec: TextGenerationSpec, config: Any) -> tuple[str, str] | None:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        from bench.models import max_positions

        # An architectures list (as configs on the hub carry) must name a causal-LM class: a BertModel
        # config is an encoder even though transformers can bolt an LM head onto BERT.
        causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
        archs = getattr(config, "architectures", None) or []
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (archs and not causal & set(archs)):
            what = ", ".join(archs) or config.model_type
            return "model.name", f"{what} is not a text-generation (causal LM) architecture"
        limit = max_positions(config)
        total = spec.prompt_tokens + spec.new_tokens
        if limit is not None and total > limit:
            return ("workload.prompt_tokens",
                    f"prompt_tokens + new_tokens = {total} exceeds the model's maximum positions ({limit})")
        return None

    @classmethod
    def record_fields(cls, spec: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_tokens": spec["prompt_tokens"], "new_tokens": spec["new_tokens"]}

    def prepare_inputs(self, runnable: Any) -> None:
        import torch

        config = runnable.config
        vocab = config.vocab_size
        eos = config.eos_token_id if config.eos_token_id is not None else vocab - 1
        eos = eos[0] if isinstance(eos, list) else eos
        special = {t for t in (config.bos_token_id, eos, config.pad_token_id) if isinstance(t, int)}
        gen = torch.Generator().manual_seed(self.run.measure.seed)  # on the CPU: same ids on every device
        ids = torch.randint(0, vocab, (self.run.batch_size, self.spec.prompt_tokens), generator=gen)
        for tok in special:  # no special tokens inside the prompt
            ids[ids == tok] = (tok + 1) % vocab if (tok + 1) % vocab not in special else (tok + 2) % vocab
        self.input_ids = ids.to(self.device)
        self.attention_mask = torch.ones_like(self.input_ids)
        # Exactly new_tokens: min == max, so EOS cannot end a sequence early.
        self.gen_kwargs = dict(max_new_tokens=self.spec.new_tokens, min_new_tokens=self.spec.new_tokens,
                               do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=eos,
                               use_cache=True)

    def call(self, runnable: Any) -> dict[str, Any]:
        import torch

        streamer = _TokenClock(self.clock)
        with torch.inference_mode():
            start = self.clock.mark()
            out = runnable.generate(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                    streamer=streamer, **self.gen_kwargs)
            end = self.clock.mark()
        generated = out.shape[1] - self.input_ids.shape[1]
        if generated != self.spec.new_tokens or len(streamer.marks) != self.spec.new_tokens:
            raise RuntimeError(f"generated {generated} tokens (streamed {len(streamer.marks)}), "
                               f"expected exactly {self.spec.new_tokens}")
        latency = self.clock.seconds(start, end)
        token_times = [self.clock.seconds(start, m) for m in streamer.marks]
        self.last_output = out
        return {"latency_s": latency, "ttft_s": token_times[0],
                "itl_s": list(np.diff(token_times)) if len(token_times) > 1 else []}

    def fidelity_outputs(self, runnable: Any) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            out = runnable.generate(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                    return_dict_in_generate=True, output_logits=True, **self.gen_kwargs)
        # logits[0]: the scores for the first new token = the model's output at the prompt's last position
        return {"primary": out.logits[0].float().cpu(),
                "tokens": out.sequences[:, self.input_ids.shape[1]:].cpu()}

    def metrics(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        batch, prompt, new = self.run.batch_size, self.spec.prompt_tokens, self.spec.new_tokens
        latency = np.array([c["latency_s"] for c in calls])
        ttft = np.array([c["ttft_s"] for c in calls])
        out: dict[str, Any] = {"latency_s": Stats.of(latency), "ttft_s": Stats.of(ttft)}
        throughput = {"output_tokens_per_s": batch * new / latency.mean(),
                      "requests_per_s": batch / latency.mean(),
                      "prefill_tokens_per_s": batch * prompt / ttft.mean()}
        if new > 1:
            decode = latency - ttft
            out["tpot_s"] = Stats.of(decode / (new - 1))
            out["itl_s"] = Stats.of([g for c in calls for g in c["itl_s"]], keep_samples=False)
            throughput["decode_tokens_per_s"] = batch * (new - 1) / decode.mean()
        out["throughput"] = throughput
        return out
