"""Engines a queue policy runs batches on: `run(batch, t0, on_token)` calls on_token(request, t, token_id)
for each new token as it exists, exactly `new_tokens` per request.

GenerateEngine: one HF `generate` per batch (prompts left-padded to the longest, max of the batch's
new_tokens decoded with EOS disabled, greedy). FixedServiceEngine: a known service time per batch, for
checking the harness against queueing theory.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from bench.serving.loadgen import Request, now

OnToken = Callable[[Request, float, int], None]


class _StepClock:
    """generate() streamer: the first put() is the prompt, each later one is one step (a token per row)."""

    def __init__(self, on_step: Callable[[Any], None]):
        self.on_step, self.prompt_seen = on_step, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.on_step(value)

    def end(self) -> None:
        pass


class GenerateEngine:
    def __init__(self, model: Any, device: Any, pad_id: int, eos_id: int):
        self.model, self.device, self.pad_id, self.eos_id = model, device, pad_id, eos_id

    def run(self, batch: list[Request], t0: float, on_token: OnToken) -> None:
        import torch

        width = max(r.prompt_tokens for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every row's next token is at the same position
            ids[i, width - r.prompt_tokens :] = torch.tensor(r.prompt_ids)
            mask[i, width - r.prompt_tokens :] = 1
        steps = max(r.new_tokens for r in batch)

        def on_step(tokens: Any) -> None:
            t = now(t0)
            flat = tokens.reshape(-1).tolist()
            for r, token in zip(batch, flat):
                if len(r.token_s) < r.new_tokens:
                    on_token(r, t, int(token))

        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=steps,
                min_new_tokens=steps,
                do_sample=False,
                num_beams=1,
                eos_token_id=self.eos_id,
                pad_token_id=self.pad_id,
                use_cache=True,
                streamer=_StepClock(on_step),
            )
        if out.shape[1] - width != steps:
            raise RuntimeError(f"generate returned {out.shape[1] - width} new tokens, expected {steps}")


class FixedServiceEngine:
    """Every batch takes `service_s` (slept, so it costs no CPU), then all its tokens exist at once."""

    def __init__(self, service_s: float):
        self.service_s = service_s
        self.busy_s: list[float] = []  # measured service time of each batch

    def run(self, batch: list[Request], t0: float, on_token: OnToken) -> None:
        start = time.perf_counter()
        end = start + self.service_s
        while (left := end - time.perf_counter()) > 0:
            time.sleep(left)
        self.busy_s.append(time.perf_counter() - start)
        t = now(t0)
        for r in batch:
            for _ in range(r.new_tokens):
                on_token(r, t, 0)
