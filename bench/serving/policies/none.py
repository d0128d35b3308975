"""none: one request at a time, first come first served."""

from bench.serving.policies.base import QueuePolicy


class NoBatching(QueuePolicy):
    name = "none"
    what = "one request at a time, FIFO"

    def next_batch(self, queue, t0):
        queue.wait(1)
        return queue.take(1)
