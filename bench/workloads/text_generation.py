"""Text generation: greedy decoding of exactly `new_tokens` after a seeded random prompt of `prompt_tokens`.
One call = one `generate` for the whole batch; a streamer marks TTFT and every inter-token gap on the clock
that times the call."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt

from bench.measure.stats import Stats
from bench.workloads.base import Workload
from bench.workloads.metrics import Metric, ReportColumn, WorkloadMetrics


class TextGenerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_tokens: PositiveInt = 128
    new_tokens: PositiveInt = 64


class TextGenerationMetrics(WorkloadMetrics):
    latency_s: Annotated[
        Stats,
        Metric(
            "s",
            "lower",
            "latency of a call at the gate's statistic (p10 of all calls of all repeats by default)",
            gated=True,
        ),
    ]
    ttft_s: Annotated[Stats, Metric("s", "lower", "time to first token at the gate's statistic", gated=True)]
    tpot_s: Annotated[
        Stats | None, Metric("s", "lower", "time per output token at the gate's statistic", gated=True)
    ] = None  # None: new_tokens 1
    itl_s: Annotated[
        Stats | None, Metric("s", "lower", "every inter-token gap of every measured call (summary only)")
    ] = None
    output_tokens_per_s: Annotated[
        float,
        Metric(
            "tokens/s",
            "higher",
            "output tokens/s at that latency (batch × new tokens / it)",
            gated=True,
            rate_of="latency_s",
        ),
    ]
    requests_per_s: Annotated[
        float, Metric("requests/s", "higher", "batch / mean latency (one sequence = one request)", rate_of="latency_s")
    ]
    prefill_tokens_per_s: Annotated[
        float,
        Metric(
            "tokens/s",
            "higher",
            "prefill tokens/s at that TTFT (batch × prompt tokens / it)",
            gated=True,
            rate_of="ttft_s",
        ),
    ]
    decode_tokens_per_s: Annotated[
        float | None,
        Metric("tokens/s", "higher", "decode tokens/s at that TPOT (batch / it)", gated=True, rate_of="tpot_s"),
    ] = None


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
    Metrics = TextGenerationMetrics
    primary = "output_tokens_per_s"
    report_columns = tuple(
        ReportColumn(f"{label} {p}", name, p)
        for label, name in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"))
        for p in ("p50", "p95", "p99")
    )
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
            return (
                "workload.prompt_tokens",
                f"prompt_tokens + new_tokens = {total} exceeds the model's maximum positions ({limit})",
            )
        return None

    @classmethod
    def energy_units(cls, batch_size: int, spec: dict[str, Any], calls: int) -> dict[str, int]:
        sequences = calls * batch_size
        return {"output_tokens": sequences * int(spec["new_tokens"]), "sequences": sequences}

    @classmethod
    def roofline(cls, record: Any, config: Any, ctx: Any):
        """Decode: one step at the median TPOT (the primary unit); prefill: the prompt at the median TTFT."""
        from bench.roofline import work

        found = ctx.transformer(record, config, cls.model_class())
        if found is None:
            return None
        shape, weights = found
        m, batch = record.metrics, record.batch_size
        prompt, new = record.workload["prompt_tokens"], record.workload["new_tokens"]
        phases = {}
        if m.tpot_s is not None and new > 1:
            phases["decode"] = work.decode_step(
                shape, batch, prompt, new, weights, ctx.fbytes, ctx.compute_dtype, m.tpot_s.p50, "tpot_s p50"
            )
        phases["prefill"] = work.prefill(
            shape, batch, prompt, weights, ctx.fbytes, ctx.compute_dtype, m.ttft_s.p50, "ttft_s p50"
        )
        return phases, "decode" if "decode" in phases else "prefill"

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
        self.gen_kwargs = dict(
            max_new_tokens=self.spec.new_tokens,
            min_new_tokens=self.spec.new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=eos,
            pad_token_id=eos,
            use_cache=True,
        )

    def call(self, runnable: Any) -> dict[str, Any]:
        import torch

        streamer = _TokenClock(self.clock)
        with torch.inference_mode():
            start = self.clock.mark()
            out = runnable.generate(
                input_ids=self.input_ids, attention_mask=self.attention_mask, streamer=streamer, **self.gen_kwargs
            )
            end = self.clock.mark()
        generated = out.shape[1] - self.input_ids.shape[1]
        if generated != self.spec.new_tokens or len(streamer.marks) != self.spec.new_tokens:
            raise RuntimeError(
                f"generated {generated} tokens (streamed {len(streamer.marks)}), "
                f"expected exactly {self.spec.new_tokens}"
            )
        latency = self.clock.seconds(start, end)
        token_times = [self.clock.seconds(start, m) for m in streamer.marks]
        self.last_output = out
        return {
            "latency_s": latency,
            "ttft_s": token_times[0],
            "itl_s": list(np.diff(token_times)) if len(token_times) > 1 else [],
        }

    def fidelity_outputs(self, runnable: Any) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            out = runnable.generate(
                input_ids=self.input_ids,
                attention_mask=self.attention_mask,
                return_dict_in_generate=True,
                output_logits=True,
                **self.gen_kwargs,
            )
        # logits[0]: the scores for the first new token = the model's output at the prompt's last position
        return {"primary": out.logits[0].float().cpu(), "tokens": out.sequences[:, self.input_ids.shape[1] :].cpu()}

    def metrics(self, calls: list[dict[str, Any]]) -> TextGenerationMetrics:
        batch, prompt, new = self.run.batch_size, self.spec.prompt_tokens, self.spec.new_tokens
        latency = np.array([c["latency_s"] for c in calls])
        ttft = np.array([c["ttft_s"] for c in calls])
        out: dict[str, Any] = {
            "latency_s": Stats.of(latency),
            "ttft_s": Stats.of(ttft),
            "output_tokens_per_s": batch * new / latency.mean(),
            "requests_per_s": batch / latency.mean(),
            "prefill_tokens_per_s": batch * prompt / ttft.mean(),
        }
        if new > 1:
            decode = latency - ttft
            out["tpot_s"] = Stats.of(decode / (new - 1))
            out["itl_s"] = Stats.of([g for c in calls for g in c["itl_s"]], keep_samples=False)
            out["decode_tokens_per_s"] = batch * (new - 1) / decode.mean()
        return TextGenerationMetrics(**out)
