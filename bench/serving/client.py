"""The endpoint client: a serving level's requests sent to an OpenAI-compatible server over HTTP and streamed
back as server-sent events, timed in this process (backend `endpoint`, policy `server`).

`EndpointClient` runs an asyncio loop with one httpx.AsyncClient (at most `connections` connections, httpx never
retries) in a thread of its own; the load generator calls `submit` at each request's arrival. The request's
`sent_s` is stamped again when it really goes out (after a free connection, if it had to wait one), so the
level's send lateness is the client's own. `token_s` holds when each content chunk arrived (TTFT: the first,
ITL: the gaps), `output_tokens` the new tokens: the server's `usage`, else the local tokenizer's count of the
streamed text, else the number of chunks (`ClientStats.token_counts` says which). Connection errors, HTTP
errors, timeouts and malformed streams fail their request and are counted per level; a request answered with
another number of tokens than asked fails too. `probe` checks a server before a point runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel

from bench.measure.stats import Stats
from bench.serving.loadgen import Request, now

PROBE_TIMEOUT_S = 30.0
FALLBACK_WORDS = "the of and to in is was for on that with as by at from his her it an are were which".split()


class ClientStats(BaseModel):
    """What the client saw in one level: errors by kind (measured requests; warm-up ones in warmup_errors),
    where token counts came from, and whether it limited concurrency itself."""

    base_url: str
    api: str
    max_connections: int
    connection_errors: int = 0
    http_errors: dict[str, int] = {}  # status code -> requests
    timeouts: int = 0
    stream_errors: int = 0  # an error event or a malformed chunk in the stream
    wrong_length: int = 0  # answered with another number of new tokens than asked
    warmup_errors: int = 0
    connection_waits: int = 0  # requests that waited for a free connection: the client bounded concurrency
    token_counts: dict[str, int] = {}  # answered requests by where their token count came from
    tokens_per_chunk: float | None = None  # answered requests, mean: 1.0 when every chunk carries one token
    prompt_tokens_server: Stats | None = None  # usage.prompt_tokens of the answered requests, where sent
    prompt_tokens_mismatch: int = 0  # answered requests whose server prompt count differs from the asked one
    first_error: str | None = None

    @property
    def errors(self) -> int:
        return self.connection_errors + sum(self.http_errors.values()) + self.timeouts + self.stream_errors

    def summary(self) -> str:
        http = ", ".join(f"{code}: {n}" for code, n in sorted(self.http_errors.items()))
        parts = [
            f"{self.connection_errors} connection error(s)",
            f"{sum(self.http_errors.values())} HTTP error(s)" + (f" ({http})" if http else ""),
            f"{self.timeouts} timeout(s)",
            f"{self.stream_errors} broken stream(s)",
            f"{self.wrong_length} answer(s) of another length than asked",
        ]
        return ", ".join(parts) + (f"; first: {self.first_error}" if self.first_error else "")


class EndpointError(Exception):
    """A server that cannot take the load test, and the option to look at (None: the section as a whole)."""

    def __init__(self, option: str | None, message: str):
        self.option, self.message = option, message
        super().__init__(message)


def generation_url(options: Any) -> str:
    return f"{options.base_url}/{'chat/completions' if options.api == 'chat' else 'completions'}"


def request_body(options: Any, prompt: str, new_tokens: int) -> dict[str, Any]:
    """Greedy, streamed, usage asked for; extra_body last (server-specific fields may override)."""
    body: dict[str, Any] = {"model": options.model, "max_tokens": new_tokens, "temperature": 0.0, "stream": True}
    body["stream_options"] = {"include_usage": True}
    if options.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body | options.extra_body


def headers(options: Any) -> dict[str, str]:
    key = options.api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def server_headers(*responses: Any) -> dict[str, str]:
    """The headers that say what answered: `server` and any whose name has `version` in it."""
    found: dict[str, str] = {}
    for resp in responses:
        for name, value in resp.headers.items():
            if name.lower() == "server" or "version" in name.lower():
                found.setdefault(name.lower(), value)
    return found


def chunk_content(chunk: dict[str, Any], api: str) -> tuple[str, str | None]:
    """(new text, finish_reason) of one streamed chunk; a usage-only chunk has no choices."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    if api == "chat":
        delta = choice.get("delta") or {}
        text = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason")


def _snippet(text: str) -> str:
    return " ".join(text.split())[:200]


def probe(options: Any) -> dict[str, Any]:
    """What the server reports (its /models entry for the model, version headers), after checking that it
    lists the model and answers one streamed 1-token request; EndpointError otherwise."""
    import httpx

    if options.api_key_env and not options.api_key():
        raise EndpointError("api_key_env", f"environment variable {options.api_key_env} is not set")
    models_url, gen_url = f"{options.base_url}/models", generation_url(options)
    timeout = min(options.timeout_s, PROBE_TIMEOUT_S)
    url = models_url
    try:
        with httpx.Client(timeout=timeout, headers=headers(options)) as http:
            listed = http.get(models_url)
            if listed.status_code >= 400:
                raise EndpointError(
                    "base_url", f"GET {models_url} answered HTTP {listed.status_code}: {_snippet(listed.text)}"
                )
            try:
                entries = listed.json()["data"]
                ids = [e["id"] for e in entries]
            except (ValueError, KeyError, TypeError):
                raise EndpointError(
                    "base_url",
                    f"GET {models_url} answered no model list (JSON with data[].id): {_snippet(listed.text)}",
                ) from None
            if options.model not in ids:
                raise EndpointError(
                    "model", f"the server does not serve {options.model!r} (it serves: {', '.join(ids) or 'nothing'})"
                )
            url = gen_url
            with http.stream("POST", gen_url, json=request_body(options, "hello", 1)) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise EndpointError(
                        None, f"POST {gen_url} answered HTTP {answer.status_code}: {_snippet(answer.text)}"
                    )
                for line in answer.iter_lines():
                    data = line[5:].strip() if line.startswith("data:") else ""
                    if data and data != "[DONE]" and "error" in (chunk := json.loads(data)):
                        raise EndpointError(None, f"POST {gen_url} streamed an error: {_snippet(str(chunk['error']))}")
    except httpx.TimeoutException:
        raise EndpointError("base_url", f"{url}: no answer within {timeout:g} s") from None
    except httpx.TransportError as exc:
        raise EndpointError("base_url", f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        raise EndpointError(None, f"POST {gen_url} streamed a malformed chunk: {exc}") from None
    return {
        "base_url": options.base_url,
        "api": options.api,
        "model": next(e for e in entries if e["id"] == options.model),
        "headers": server_headers(listed, answer),
        "httpx": httpx.__version__,
    }


def prompt_text(req: Request, tokenizer: Any) -> str:
    """The prompt sent for `req`: its ids decoded by the model's tokenizer; without one, one common word per
    asked token (the server's own count is recorded either way)."""
    if tokenizer is not None:
        return tokenizer.decode(req.prompt_ids)
    return " ".join(FALLBACK_WORDS[i % len(FALLBACK_WORDS)] for i in req.prompt_ids)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class _StreamError(Exception):
    pass


class EndpointClient:
    """Sends requests from any thread; each one's coroutine runs on this client's own loop."""

    def __init__(self, options: Any, tokenizer: Any = None, connections: int = 1):
        self.options, self.tokenizer = options, tokenizer
        self.connections = options.max_connections or connections
        self.url = generation_url(options)
        self.stats = ClientStats(base_url=options.base_url, api=options.api, max_connections=self.connections)
        self._prompt_counts: list[tuple[int, int]] = []  # (server's prompt tokens, asked) per answered request
        self._chunks: list[tuple[int, int]] = []  # (new tokens, content chunks) per answered request
        self._tag = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="endpoint-client")
        self._thread.start()
        self._http, self._slots = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self):
        import httpx

        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        client = httpx.AsyncClient(
            limits=limits, timeout=httpx.Timeout(self.options.timeout_s), headers=headers(self.options)
        )
        return client, asyncio.Semaphore(self.connections)

    def begin_level(self, tag: str) -> None:
        self._tag = tag
        self.stats = ClientStats(base_url=self.options.base_url, api=self.options.api, max_connections=self.connections)
        self._prompt_counts, self._chunks = [], []

    def end_level(self) -> ClientStats:
        if self._chunks:
            self.stats.tokens_per_chunk = sum(n for n, _ in self._chunks) / sum(c for _, c in self._chunks)
        if self._prompt_counts:
            self.stats.prompt_tokens_server = Stats.of([float(s) for s, _ in self._prompt_counts])
            self.stats.prompt_tokens_mismatch = sum(s != a for s, a in self._prompt_counts)
        return self.stats

    def submit(self, req: Request, level: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(self._one(req, level), self._loop)

    def close(self) -> None:
        async def shut() -> None:
            await self._http.aclose()
            await self._loop.shutdown_asyncgens()  # streams a timeout cut short

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def _fail(self, req: Request, kind: str, message: str, code: int | None = None) -> None:
        req.error = message[:300]
        stats = self.stats
        if not req.measured:
            stats.warmup_errors += 1
            return
        if kind == "http":
            stats.http_errors = {**stats.http_errors, str(code): stats.http_errors.get(str(code), 0) + 1}
        elif kind == "connection":
            stats.connection_errors += 1
        elif kind == "timeout":
            stats.timeouts += 1
        elif kind == "stream":
            stats.stream_errors += 1
        elif kind == "length":
            stats.wrong_length += 1
        stats.first_error = stats.first_error or req.error

    async def _one(self, req: Request, level: Any) -> None:
        try:
            if self._slots.locked() and req.measured:
                self.stats.connection_waits += 1
            async with self._slots:
                req.sent_s = now(level.t0)  # when it really goes out: the level's lateness is the client's
                await self._stream(req, level.t0)
        except BaseException as exc:  # never lose a request: it fails with the reason
            if req.error is None:
                self._fail(req, "stream", f"client error: {type(exc).__name__}: {exc}")
            if not isinstance(exc, Exception):
                raise
        finally:
            level.complete(req)

    async def _exchange(self, req: Request, t0: float, got: dict[str, Any]) -> None:
        """One streamed request; what it received goes into `got` (texts, usage, finish) as it arrives."""
        body = request_body(self.options, req.prompt_text or "", req.new_tokens)
        request_id = {"X-Request-ID": f"{self._tag}-r{req.index}"}  # servers log it: one id per request
        async with self._http.stream("POST", self.url, json=body, headers=request_id) as resp:
            if resp.status_code >= 400:
                detail = (await resp.aread()).decode("utf-8", "replace")
                raise _HTTPError(resp.status_code, f"HTTP {resp.status_code}: {_snippet(detail)}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise _StreamError(f"server error in stream: {_snippet(str(chunk['error']))}")
                text, reason = chunk_content(chunk, self.options.api)
                if text:
                    req.token_s.append(now(t0))
                    got["texts"].append(text)
                got["finish"] = reason or got["finish"]
                got["usage"] = chunk.get("usage") or got["usage"]

    async def _stream(self, req: Request, t0: float) -> None:
        import httpx

        got: dict[str, Any] = {"texts": [], "usage": None, "finish": None}
        try:  # wait_for, not asyncio.timeout: Python 3.10 has no asyncio.timeout
            await asyncio.wait_for(self._exchange(req, t0, got), self.options.timeout_s)
        except _HTTPError as exc:
            return self._fail(req, "http", str(exc), exc.status)
        except _StreamError as exc:
            return self._fail(req, "stream", str(exc))
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return self._fail(req, "timeout", f"timeout: no complete answer within {self.options.timeout_s:g} s")
        except httpx.TransportError as exc:
            return self._fail(req, "connection", f"connection error: {type(exc).__name__}: {exc}")
        except (ValueError, TypeError, AttributeError) as exc:
            return self._fail(req, "stream", f"malformed stream: {type(exc).__name__}: {exc}")
        texts, usage, finish = got["texts"], got["usage"], got["finish"]
        if usage and isinstance(usage.get("completion_tokens"), int):
            count, source = usage["completion_tokens"], "usage"
        elif self.tokenizer is not None:
            count, source = len(self.tokenizer.encode("".join(texts), add_special_tokens=False)), "tokenizer"
        else:
            count, source = len(texts), "chunks"
        req.output_tokens = count
        if count != req.new_tokens or not texts:
            return self._fail(
                req,
                "length",
                f"asked for {req.new_tokens} new tokens, the server sent {count} ({source}) in {len(texts)} "
                f"content chunk(s), finish_reason {finish}",
            )
        if req.measured:
            self.stats.token_counts = {**self.stats.token_counts, source: self.stats.token_counts.get(source, 0) + 1}
            self._chunks.append((count, len(texts)))
            if usage and isinstance(usage.get("prompt_tokens"), int):
                self._prompt_counts.append((usage["prompt_tokens"], req.prompt_tokens))


def wait_all(futures: list[Future], timeout_s: float) -> None:
    """Every submitted request finished (each one bounds itself by timeout_s; this is a backstop)."""
    deadline = time.monotonic() + timeout_s
    for f in futures:
        f.result(timeout=max(0.0, deadline - time.monotonic()))
