"""continuous: iteration-level scheduling by transformers' ContinuousBatchingManager (paged attention).

Each request is handed to the manager when the generator sends it; the manager's own thread admits it into
the running batch at the next step. `batch_size` bounds concurrency (max_requests_per_batch, and a paged cache
of num_blocks holding batch_size sequences of the longest prompt + new tokens); one step carries at most
max_batch_tokens = longest prompt + batch_size tokens. The manager picks its paged attention implementation.
Token times are stamped when the streamed output reaches this process. The manager does not say when it
scheduled a request, so queue wait is not reported.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from bench.serving.loadgen import now
from bench.serving.policies.base import Policy

BLOCK_SIZE = 16


class ContinuousBatching(Policy):
    name = "continuous"
    what = "iteration-level scheduling with transformers' continuous-batching manager and paged attention"
    backends = ("eager",)  # drives the torch model itself; other backends' runnables are not PreTrainedModels

    @classmethod
    def unsupported_reason(cls, backend: str, device_type: str) -> str | None:
        import transformers

        try:  # 5.24 moved it (the old name warns)
            from transformers.generation.continuous_batching.utils import get_device_and_memory_breakdown
        except ImportError:
            from transformers.generation.continuous_batching.requests import get_device_and_memory_breakdown

        if device_type == "cpu" and not get_device_and_memory_breakdown()[1]:
            return (
                f"transformers {transformers.__version__}'s continuous batching sizes its paged cache from the "
                "device's memory and found no total for the CPU (it reads it with psutil)"
            )
        return None

    def serve(self, level: Any) -> None:
        import dataclasses

        import torch
        from transformers import ContinuousBatchingConfig, GenerationConfig

        model = level.engine.model
        reqs = level.requests
        longest = max(r.prompt_tokens + r.new_tokens for r in reqs)
        config = GenerationConfig(
            max_new_tokens=max(r.new_tokens for r in reqs),
            do_sample=False,
            eos_token_id=-1,  # -1: no EOS stop
            pad_token_id=level.engine.pad_id,
        )
        # 5.24 renamed block_size to page_size (the old name is a deprecated alias there).
        page = (
            "page_size"
            if "page_size" in {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
            else "block_size"
        )
        cb_config = ContinuousBatchingConfig(
            **{page: BLOCK_SIZE},
            num_blocks=self.batch_size * math.ceil(longest / BLOCK_SIZE) + 1,
            max_batch_tokens=max(r.prompt_tokens for r in reqs) + self.batch_size,
            max_requests_per_batch=self.batch_size,
            scheduler_type="fifo",
        )
        manager = model.init_continuous_batching(generation_config=config, continuous_batching_config=cb_config)
        by_id = {f"r{r.index}": r for r in reqs}
        sent_all = threading.Event()
        manager.start()
        try:
            with torch.inference_mode():
                level.start_generator(
                    sink=lambda r: manager.add_request(
                        r.prompt_ids, request_id=f"r{r.index}", max_new_tokens=r.new_tokens, streaming=True
                    ),
                    on_finish=sent_all.set,
                )
                while not (sent_all.is_set() and all(r.done or r.sent_s is None for r in reqs)):
                    out = manager.get_result(timeout=0.1)
                    if out is None:
                        if not manager.is_running():
                            raise RuntimeError("the continuous-batching manager stopped (see the log)")
                        continue
                    req = by_id[out.request_id]
                    stamp = now(level.t0)
                    if out.error:
                        req.error = str(out.error)[:300]
                    # The output carries the request's live token list: stamp the tokens not seen before.
                    tokens = list(out.generated_tokens)[: req.new_tokens]
                    for token in tokens[len(req.token_s) :]:
                        level.token(req, stamp, token)
                    if req.done and not req.answers:
                        level.complete(req)
        finally:
            manager.stop(block=True, timeout=10)
        for req in reqs:  # never sent (stopped early) or cut short by the manager stopping
            if req.sent_s is not None and not req.answers:
                req.error = req.error or "no answer from the continuous-batching manager"
                level.complete(req)
