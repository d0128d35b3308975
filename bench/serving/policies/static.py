"""static: fixed batches of batch_size (prompts padded to the longest); a partial batch only at the end."""

from bench.serving.policies.base import QueuePolicy


class StaticBatching(QueuePolicy):
    name = "static"
    what = "waits for a full batch of batch_size (padded); a partial batch only when the level ends"

    def next_batch(self, queue, t0):
        queue.wait(self.batch_size)
        return queue.take(self.batch_size)
