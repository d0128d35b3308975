"""One load level: a schedule of requests served by a policy on an engine, timed from one origin t0.

`Level` is what a policy sees: the engine, the requests, `start_generator`, `token` (a new token of a
request exists) and `complete` (a request is answered or failed). A level stops sending early once a sent
request has waited `abort_wait_s` for its first token: it is clearly saturated, and more requests would
only measure the backlog.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.serving.loadgen import LoadGenerator, Request, now


@dataclass
class Level:
    engine: Any
    requests: list[Request]
    closed_loop: bool = False
    abort_wait_s: float | None = None
    t0: float = 0.0
    batches: list[int] = field(default_factory=list)  # size of each batch a queue policy ran
    generator: LoadGenerator | None = None
    duration_s: float = 0.0
    _waiting: deque = field(default_factory=deque)  # sent, no first token yet (oldest first)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start_generator(self, sink: Callable[[Request], None], on_finish: Callable[[], None]) -> None:
        def send(req: Request) -> None:
            with self._lock:
                self._waiting.append(req)
            sink(req)

        self.generator = LoadGenerator(self.requests, send, self.t0, self.closed_loop, self.saturated_now, on_finish)
        self.generator.start()

    def saturated_now(self) -> bool:
        if self.abort_wait_s is None:
            return False
        with self._lock:
            while self._waiting and (self._waiting[0].token_s or self._waiting[0].error):
                self._waiting.popleft()
            oldest = self._waiting[0] if self._waiting else None
        return oldest is not None and now(self.t0) - oldest.sent_s > self.abort_wait_s

    def token(self, req: Request, t: float, token_id: int) -> None:
        req.token_s.append(t)
        req.output_ids.append(token_id)

    def complete(self, req: Request) -> None:
        req.answers += 1
        if self.generator is not None:
            self.generator.answered.set()


def run_level(
    policy: Any, engine: Any, requests: list[Request], closed_loop: bool = False, abort_wait_s: float | None = None
) -> Level:
    level = Level(engine=engine, requests=requests, closed_loop=closed_loop, abort_wait_s=abort_wait_s)
    level.t0 = time.perf_counter()
    policy.serve(level)
    level.duration_s = now(level.t0)
    if level.generator is not None:
        level.generator.join()
        if level.generator.error is not None:
            raise level.generator.error
    return level
