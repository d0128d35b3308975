"""Feature extraction (encoders: BERT, MiniLM): one forward over `batch_size` sequences of exactly
`sequence_length` tokens (real text when the model ships a tokenizer, else seeded random ids; no padding).
Fidelity compares the mean-pooled sentence embedding (docs/design.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bench.measure.stats import Stats
from bench.workloads.base import Workload
from bench.workloads.metrics import Metric, WorkloadMetrics

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Benchmarks are only useful when someone else can repeat them and get the same answer.",
    "A transformer encoder turns a sequence of tokens into a sequence of contextual vectors.",
    "Quantization trades a little accuracy for smaller weights and, sometimes, faster inference.",
    "The weather in the mountains changed quickly, and the hikers returned before the storm.",
    "Memory bandwidth, not arithmetic, limits how fast a small batch can be decoded.",
    "She read the report twice before deciding which backend the team should deploy.",
    "Retrieval systems embed documents once and compare them with every incoming query.",
)


class FeatureExtractionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sequence_length: int = Field(128, ge=2)


class FeatureExtractionMetrics(WorkloadMetrics):
    latency_s: Annotated[
        Stats, Metric("s", "lower", "one forward pass over the batch at the gate's statistic", gated=True)
    ]
    sequences_per_s: Annotated[
        float,
        Metric("sequences/s", "higher", "sequences/s at that latency (batch / it)", gated=True, rate_of="latency_s"),
    ]
    input_tokens_per_s: Annotated[
        float, Metric("tokens/s", "higher", "batch × sequence_length / mean latency", rate_of="latency_s")
    ]


class FeatureExtraction(Workload):
    task = "feature-extraction"
    Spec = FeatureExtractionSpec
    Metrics = FeatureExtractionMetrics
    primary = "sequences_per_s"
    fidelity_output = "sentence embedding (mean-pooled last hidden state)"

    @classmethod
    def model_class(cls):
        from transformers import AutoModel

        return AutoModel

    @classmethod
    def check_model(cls, spec: FeatureExtractionSpec, config: Any) -> tuple[str, str] | None:
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        from bench.models import max_positions

        # Encoders are the models with a masked-LM head in transformers (BERT, RoBERTa, MiniLM, …);
        # decoder-only LMs (GPT-2, Llama) are not.
        archs = getattr(config, "architectures", None) or []
        if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or any(
            a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs
        ):
            what = ", ".join(archs) or config.model_type
            return "model.name", f"{what} is not an encoder (feature-extraction needs a BERT-class model)"
        limit = max_positions(config)
        if limit is not None and spec.sequence_length > limit:
            return (
                "workload.sequence_length",
                f"sequence_length {spec.sequence_length} exceeds the model's maximum positions ({limit})",
            )
        return None

    @classmethod
    def energy_units(cls, batch_size: int, spec: dict[str, Any], calls: int) -> dict[str, int]:
        return {"sequences": calls * batch_size}

    @classmethod
    def roofline(cls, record: Any, config: Any, ctx: Any):
        """One forward pass over batch × sequence_length tokens at the median latency."""
        from bench.roofline import work

        found = ctx.transformer(record, config, cls.model_class())
        if found is None:
            return None
        shape, weights = found
        forward = work.encoder_forward(
            shape,
            record.batch_size,
            record.workload["sequence_length"],
            weights,
            ctx.fbytes,
            ctx.compute_dtype,
            record.metrics.latency_s.p50,
            "latency_s p50",
        )
        return {"forward": forward}, "forward"

    def _token_ids(self, config: Any):
        import torch

        batch, length = self.run.batch_size, self.spec.sequence_length
        location = Path(self.run.model_location)
        if location.is_dir() and (location / "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
            rows = []
            for i in range(batch):
                text, k = "", i
                while len(tokenizer(text)["input_ids"]) < length:  # enough text to fill the row
                    text += " " + SENTENCES[k % len(SENTENCES)]
                    k += 1
                rows.append(text)
            enc = tokenizer(rows, truncation=True, max_length=length, return_tensors="pt")
            self.inputs_from = "tokenizer, built-in English sentences"
            return enc["input_ids"]
        gen = torch.Generator().manual_seed(self.run.measure.seed)
        cls_id = config.cls_token_id if getattr(config, "cls_token_id", None) is not None else 101 % config.vocab_size
        sep_id = config.sep_token_id if getattr(config, "sep_token_id", None) is not None else 102 % config.vocab_size
        special = {cls_id, sep_id, config.pad_token_id}
        ids = torch.randint(0, config.vocab_size, (batch, length), generator=gen)
        for tok in special:
            if isinstance(tok, int):
                ids[ids == tok] = (tok + 3) % config.vocab_size
        ids[:, 0], ids[:, -1] = cls_id, sep_id
        self.inputs_from = "seeded random token ids"
        return ids

    def prepare_inputs(self, runnable: Any) -> None:
        import torch

        ids = self._token_ids(runnable.config)
        self.details = {"inputs": self.inputs_from}
        self.inputs = {"input_ids": ids.to(self.device), "attention_mask": torch.ones_like(ids).to(self.device)}
        if getattr(runnable.config, "type_vocab_size", 0):
            self.inputs["token_type_ids"] = torch.zeros_like(ids).to(self.device)

    def _forward(self, runnable: Any):
        import torch

        with torch.inference_mode():
            return runnable(**self.inputs).last_hidden_state

    def call(self, runnable: Any) -> dict[str, Any]:
        start = self.clock.mark()
        hidden = self._forward(runnable)
        end = self.clock.mark()
        if hidden.shape[:2] != self.inputs["input_ids"].shape:
            raise RuntimeError(
                f"last_hidden_state has shape {tuple(hidden.shape)}, "
                f"expected {tuple(self.inputs['input_ids'].shape)} + hidden"
            )
        return {"latency_s": self.clock.seconds(start, end)}

    def fidelity_outputs(self, runnable: Any) -> dict[str, Any]:
        hidden = self._forward(runnable).float()
        mask = self.inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return {"primary": ((hidden * mask).sum(1) / mask.sum(1)).cpu()}

    def metrics(self, calls: list[dict[str, Any]]) -> FeatureExtractionMetrics:
        batch, length = self.run.batch_size, self.spec.sequence_length
        latency = np.array([c["latency_s"] for c in calls])
        return FeatureExtractionMetrics(
            latency_s=Stats.of(latency),
            sequences_per_s=batch / latency.mean(),
            input_tokens_per_s=batch * length / latency.mean(),
        )
