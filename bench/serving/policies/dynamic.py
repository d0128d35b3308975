"""dynamic: as Triton's dynamic batcher. Once a request is queued, wait until batch_size are queued or the
oldest has waited max_queue_delay_ms, then run whatever is queued (at most batch_size)."""

from bench.serving.policies.base import QueuePolicy


class DynamicBatching(QueuePolicy):
    name = "dynamic"
    what = "batch of whatever is queued, up to batch_size, waiting at most max_queue_delay_ms for more"

    def next_batch(self, queue, t0):
        queue.wait(1)
        oldest = queue.oldest()
        if oldest is None:
            return []
        queue.wait(self.batch_size, deadline=oldest.sent_s + self.max_queue_delay_s, t0=t0)
        return queue.take(self.batch_size)
