"""What a batching policy is: it takes the requests the load generator sends and runs them on an engine.

Adding a policy = one module with a `Policy` subclass + one entry in `bench.serving.policies.POLICIES`.
Queue policies (none, static, dynamic) differ only in `next_batch`: which queued requests form the next
batch, and how long to wait for more.
"""

from __future__ import annotations

import traceback
from typing import Any, ClassVar

from bench.serving.loadgen import RequestQueue, now


class Policy:
    name: ClassVar[str]
    what: ClassVar[str]  # one line for docs and reports
    backends: ClassVar[tuple[str, ...] | None] = None  # backends it can drive (None: any); else exit 2

    def __init__(self, batch_size: int, max_queue_delay_s: float):
        self.batch_size = batch_size
        self.max_queue_delay_s = max_queue_delay_s

    @classmethod
    def unsupported_reason(cls, backend: str, device_type: str) -> str | None:
        """Why this policy cannot run here (recorded as `unsupported`), or None."""
        return None

    def serve(self, level: Any) -> None:
        """Serve every request `level` (bench.serving.level.Level) sends, until its generator is done and
        every sent request is answered or failed."""
        raise NotImplementedError


class QueuePolicy(Policy):
    def next_batch(self, queue: RequestQueue, t0: float) -> list:
        raise NotImplementedError

    def serve(self, level: Any) -> None:
        queue = RequestQueue()
        level.start_generator(sink=queue.put, on_finish=queue.close)
        number = 0
        while True:
            batch = self.next_batch(queue, level.t0)
            if not batch:
                if queue.closed and not len(queue):
                    return
                continue
            started = now(level.t0)
            for req in batch:
                req.started_s, req.batch = started, number
            level.batches.append(len(batch))
            number += 1
            try:
                level.engine.run(batch, level.t0, level.token)
            except Exception as exc:  # a failed batch fails its requests; the level goes on
                traceback.print_exc()
                for req in batch:
                    req.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            for req in batch:
                level.complete(req)
