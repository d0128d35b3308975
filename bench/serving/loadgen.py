"""The load generator and the queue between it and a batching policy.

The generator is a thread that hands each request over at its scheduled time (sleeping, never spinning: on
a small machine a spinning client steals the server's core) and stamps when it really did: `sent_s −
scheduled_s` is its own lateness, which the level reports (a generator that fell behind voids the level).
All times are seconds on time.perf_counter from the level's start `t0`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Request:
    index: int  # position in the level's schedule (warm-up requests first)
    prompt_ids: list[int]
    new_tokens: int
    scheduled_s: float  # when the generator is meant to send it
    measured: bool = True  # False for warm-up requests
    sent_s: float | None = None  # when it was handed to the server (its arrival)
    started_s: float | None = None  # when a policy put it into a batch (None where the server does not say)
    token_s: list[float] = field(default_factory=list)  # when each new token existed
    output_ids: list[int] = field(default_factory=list)
    batch: int | None = None  # which batch served it (queue policies)
    error: str | None = None
    answers: int = 0  # times it was completed: exactly 1 when all is well
    prompt_text: str | None = None  # an endpoint's prompt (bench.serving.client), the text of prompt_ids
    # An endpoint streams chunks, not tokens: token_s then holds each content chunk's arrival and
    # output_tokens the count of new tokens (the server's usage, else the tokenizer's count, else chunks).
    output_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def tokens_out(self) -> int:
        """New tokens received: output_tokens where the stream's chunks are not tokens, else len(token_s)."""
        return self.output_tokens if self.output_tokens is not None else len(self.token_s)

    @property
    def done(self) -> bool:
        return self.tokens_out >= self.new_tokens or self.error is not None


def now(t0: float) -> float:
    return time.perf_counter() - t0


class RequestQueue:
    """FIFO of sent, not yet scheduled requests; `closed` once the generator has nothing more to send."""

    def __init__(self):
        self._items: deque[Request] = deque()
        self._cond = threading.Condition()
        self.closed = False

    def put(self, request: Request) -> None:
        with self._cond:
            self._items.append(request)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait(self, count: int, deadline: float | None = None, t0: float = 0.0) -> int:
        """Block until `count` requests are queued, the queue is closed, or perf_counter − t0 ≥ deadline;
        returns how many are queued."""
        with self._cond:
            while len(self._items) < count and not self.closed:
                timeout = None if deadline is None else deadline - now(t0)
                if timeout is not None and timeout <= 0:
                    break
                self._cond.wait(timeout)
            return len(self._items)

    def oldest(self) -> Request | None:
        with self._cond:
            return self._items[0] if self._items else None

    def take(self, k: int) -> list[Request]:
        with self._cond:
            return [self._items.popleft() for _ in range(min(k, len(self._items)))]

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class LoadGenerator(threading.Thread):
    """Sends `requests` to `sink` at their scheduled times (open loop), or each after the previous one is
    answered (`closed_loop`: the one-at-a-time service level). `should_stop()` ends sending early (a clearly
    saturated level); requests never sent keep sent_s None."""

    def __init__(
        self,
        requests: list[Request],
        sink: Callable[[Request], None],
        t0: float,
        closed_loop: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        on_finish: Callable[[], None] = lambda: None,
    ):
        super().__init__(daemon=True, name="load-generator")
        self.requests, self.sink, self.t0 = requests, sink, t0
        self.closed_loop, self.should_stop, self.on_finish = closed_loop, should_stop, on_finish
        self.answered = threading.Event()
        self.stopped_early = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for req in self.requests:
                if self.closed_loop:
                    req.scheduled_s = now(self.t0)
                else:
                    delay = req.scheduled_s - now(self.t0)
                    while delay > 0:  # sleep returns early on some platforms; re-check
                        if self.should_stop():
                            break
                        time.sleep(min(delay, 0.05))
                        delay = req.scheduled_s - now(self.t0)
                if self.should_stop():
                    self.stopped_early = True
                    break
                req.sent_s = now(self.t0)
                self.answered.clear()
                self.sink(req)
                if self.closed_loop:
                    while not self.answered.wait(0.05):
                        if self.should_stop():
                            break
        except BaseException as exc:  # surfaced by the level, never lost in a thread
            self.error = exc
        finally:
            self.on_finish()
