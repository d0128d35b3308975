"""server: the batching is the server's (backend endpoint). Each request is handed to the endpoint client
(bench.serving.client) when the generator sends it; the level ends once every sent request is answered or
failed. The server does not say when it scheduled a request, so queue wait is not reported."""

from __future__ import annotations

import threading
from typing import Any

from bench.serving.policies.base import Policy


class ServerBatching(Policy):
    name = "server"
    what = "the server's own batching: each request sent over HTTP when it arrives (backend endpoint)"
    backends = ("endpoint",)

    def serve(self, level: Any) -> None:
        from bench.serving.client import wait_all

        client = level.engine
        futures: list = []
        sent_all = threading.Event()
        level.start_generator(sink=lambda r: futures.append(client.submit(r, level)), on_finish=sent_all.set)
        sent_all.wait()
        # each request bounds itself by timeout_s once it has a connection; at most every request waits its turn
        waves = -(-len(futures) // max(1, client.connections))
        wait_all(list(futures), timeout_s=client.options.timeout_s * (waves + 1) + 10)
