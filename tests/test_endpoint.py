"""backend endpoint against a real `transformers serve` on 127.0.0.1: a tiny random-weight Llama saved to a
temporary directory with a word-level tokenizer built by `tokenizers` (nothing downloaded). The server runs
under a timing middleware (an ASGI wrapper around the real app, see SERVER_LAUNCHER) that writes when each
request arrived and when each body chunk left, on CLOCK_MONOTONIC: the server-side timing the client's
figures are checked against."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bench.errors import BenchInputError

from conftest import covering

VOCAB = 256
NEW_TOKENS = 6
SERVER_START_S = 240  # importing torch + transformers and loading the model on a shared 2-core machine

# The real `transformers serve` CLI, its uvicorn app wrapped by an observer that changes nothing it sends.
SERVER_LAUNCHER = r"""
import json, sys, time
import uvicorn

LOG = sys.argv[1]
WATCHED = ("/v1/completions", "/v1/chat/completions")


class Timing:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in WATCHED:
            return await self.app(scope, receive, send)
        entry = {"id": dict(scope["headers"]).get(b"x-request-id", b"").decode(), "start": time.monotonic(),
                 "bodies": []}

        async def timed(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            if message["type"] == "http.response.body" and message.get("body"):
                entry["bodies"].append([time.monotonic(), message["body"].decode("utf-8", "replace")])
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            entry["end"] = time.monotonic()
            with open(LOG, "a") as f:
                f.write(json.dumps(entry) + "\n")


_init = uvicorn.Config.__init__
uvicorn.Config.__init__ = lambda self, app, *a, **k: _init(self, Timing(app), *a, **k)
from transformers.cli.transformers import main

sys.argv = ["transformers", "serve", *sys.argv[2:]]
main()
"""


def build_model_dir(path: Path) -> Path:
    """A 2-layer Llama with seeded random weights and no EOS (every request runs to max_tokens), and a
    word-level tokenizer (w0 … w255, one token per word, no special tokens) with a plain chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=None, do_sample=False)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("tiny-served"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(model_dir: Path, log: Path, continuous: bool = False):
    """`transformers serve MODEL_DIR` on 127.0.0.1 under the timing observer; yields (base_url, process)."""
    import httpx

    port = free_port()
    args = [str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "info"]
    if continuous:  # a bounded paged cache: by default it takes 60-90% of the machine's RAM on the CPU
        args += ["--continuous-batching", "--cb-num-blocks", "64", "--cb-block-size", "16"]
        args += ["--cb-max-batch-tokens", "128"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    out = open(log.with_suffix(".out"), "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_LAUNCHER, str(log), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited {proc.returncode}: {log.with_suffix('.out').read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve not up within {SERVER_START_S} s")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield f"{base}/v1", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        out.close()


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.jsonl"
    with served(model_dir, log) as (base_url, _):
        yield base_url, log


SCENARIO = """
name: {name}
task: text-generation
model: {{name: {model}}}
device: cpu
matrix: {{backend: [endpoint], batching: [server], batch_size: {batch}}}
backend_options:
  endpoint: {{base_url: "{base_url}", model: "{model}", api: {api}, timeout_s: 60{extra}}}
serving:
  rates: {rates}
  requests: {requests}
  warmup_requests: 2
  prompt_tokens: {{distribution: uniform, min: 4, max: 12}}
  new_tokens: {{value: {new}}}
  slo: {{e2e_p95_s: 60}}
measure: {{timeout_s: 300}}
"""


def scenario(tmp_path: Path, base_url: str, model: Path, **kw) -> Path:
    values = (
        dict(
            name="ep",
            model=model,
            base_url=base_url,
            api="completions",
            extra="",
            rates="[3]",
            requests=10,
            new=NEW_TOKENS,
            batch="[4]",
        )
        | kw
    )
    path = tmp_path / f"{values['name']}.yaml"
    path.write_text(textwrap.dedent(SCENARIO.format(**values)))
    return path


def events(body: str) -> list[dict]:
    return [json.loads(p[5:]) for p in body.split("\n\n") if p.startswith("data:") and p[5:].strip() != "[DONE]"]


def content(event: dict) -> str:
    choice = (event.get("choices") or [{}])[0]
    return choice.get("text") or (choice.get("delta") or {}).get("content") or ""


def server_view(log: Path, tag: str, warmup: int) -> list[dict]:
    """The server's measured requests of one level, by request index: TTFT and E2E as the server sent them,
    content events and the usage it reported."""
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        prefix, _, index = entry["id"].rpartition("-r")
        if prefix != tag or int(index) < warmup:
            continue
        timed = [(t, e) for t, body in entry["bodies"] for e in events(body)]
        first = next(t for t, e in timed if content(e))
        usage = next(e["usage"] for _, e in timed if e.get("usage"))
        out.append(
            dict(
                index=int(index),
                ttft=first - entry["start"],
                e2e=max(t for t, e in timed if content(e)) - entry["start"],
                chunks=sum(bool(content(e)) for _, e in timed),
                usage=usage,
                status=entry["status"],
            )
        )
    return sorted(out, key=lambda e: e["index"])


def results(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def check_level_against_server(level: dict, log: Path, tag: str) -> None:
    s = level["serving"]
    assert level["status"] == "ok" and s["answered"] == s["requests"] == 10 and s["failed"] == 0, level["error"]
    client = s["client"]
    assert client["token_counts"] == {"usage": 10} and client["wrong_length"] == 0
    assert client["connection_errors"] == client["timeouts"] == 0 and client["http_errors"] == {}
    assert client["prompt_tokens_mismatch"] == 0  # the server counted the prompt the client asked for
    seen = server_view(log, tag, warmup=2)
    # one server request per request (nothing retried), each answered with exactly the asked tokens
    assert [e["index"] for e in seen] == list(range(2, 12))
    for e in seen:
        assert e["status"] == 200 and e["usage"]["completion_tokens"] == NEW_TOKENS and e["chunks"] == NEW_TOKENS
        assert 4 <= e["usage"]["prompt_tokens"] <= 12
    ttft, e2e = s["ttft_s"]["samples"], s["e2e_s"]["samples"]  # in request order, as the server's
    assert len(ttft) == len(e2e) == 10 and all(t < e for t, e in zip(ttft, e2e))
    # The client's interval holds the server's: it stamps before sending and after receiving (one clock,
    # CLOCK_MONOTONIC, both processes); over loopback it is only a little longer.
    slack = 1e-3
    for t, e, srv in zip(ttft, e2e, seen):
        assert t >= srv["ttft"] - slack and e >= srv["e2e"] - slack, (t, e, srv)
    overhead = sorted(t - srv["ttft"] for t, srv in zip(ttft, seen))
    assert overhead[len(overhead) // 2] < 0.05, overhead  # median client overhead on TTFT: below 50 ms


@pytest.mark.parametrize("continuous", [False, True], ids=["generate", "continuous-batching"])
@covering(SERVER_START_S, own_s=400)
def test_endpoint_level_matches_what_the_server_sent(model_dir, server, tmp_path, cli, continuous):
    if continuous:
        from bench.serving.policies.continuous import ContinuousBatching

        reason = ContinuousBatching.unsupported_reason("eager", "cpu")  # the library's own memory probe
        if reason:
            pytest.skip(f"transformers serve --continuous-batching on the CPU: {reason}")
        log = tmp_path / "cb-server.jsonl"
        ctx = served(model_dir, log, continuous=True)
    else:
        base_url, log = server
        ctx = contextlib.nullcontext((base_url, None))
    with ctx as (base_url, _):
        out = tmp_path / "run"
        proc = cli("run", str(scenario(tmp_path, base_url, model_dir)), "--out", str(out), "--no-fidelity", timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    level, summary = results(out)
    assert level["run_id"].endswith("@3") and summary["run_id"].endswith("@max")
    assert level["precision"] == summary["precision"] == "server" and level["serving"]["policy"] == "server"
    assert level["device_name"] == f"server at {base_url}" and level["memory"] is None
    server_info = level["details"]["server"]
    assert server_info["model"]["id"] == str(model_dir) and server_info["headers"]["server"] == "uvicorn"
    assert level["details"]["tokenizer"] == str(model_dir)
    check_level_against_server(level, log, "3")


@covering(SERVER_START_S, own_s=300)
def test_chat_api_streams_the_asked_tokens(model_dir, server, tmp_path, cli):
    base_url, log = server
    out = tmp_path / "run"
    path = scenario(tmp_path, base_url, model_dir, name="chat", api="chat", rates="[5]")
    proc = cli("run", str(path), "--out", str(out), "--no-fidelity", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    level = results(out)[0]
    assert level["status"] == "ok" and level["serving"]["answered"] == 10, level["error"]
    assert level["serving"]["client"]["token_counts"] == {"usage": 10}
    seen = server_view(log, "5", warmup=2)
    assert len(seen) == 10 and all(e["usage"]["completion_tokens"] == NEW_TOKENS for e in seen)


@pytest.mark.parametrize(
    "case,field,message",
    [
        ("unreachable", "backend_options.endpoint.base_url", "cannot reach"),
        ("unknown model", "backend_options.endpoint.model", "does not serve 'no-such-model'"),
        ("HTTP 422", "backend_options.endpoint", "answered HTTP 422"),
    ],
)
@covering(SERVER_START_S, own_s=120)
def test_bad_endpoint_exits_2_before_anything_runs(model_dir, server, tmp_path, cli, case, field, message):
    base_url, _ = server
    kw = {}
    if case == "unreachable":
        base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    elif case == "unknown model":
        kw = dict(model="no-such-model")
    else:
        kw = dict(extra=", extra_body: {ignore_eos: true}")  # vLLM's field: transformers serve refuses it
    path = scenario(tmp_path, base_url, model_dir)
    if "model" in kw:
        path.write_text(path.read_text().replace(f'model: "{model_dir}"', 'model: "no-such-model"'))
    elif kw:
        path = scenario(tmp_path, base_url, model_dir, **kw)
    out = tmp_path / "run"
    proc = cli("run", str(path), "--out", str(out), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and field in lines[0] and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "results.jsonl").exists()


@covering(SERVER_START_S, own_s=400)
def test_server_dying_mid_level_fails_that_level_and_the_sweep_goes_on(model_dir, tmp_path, cli):
    log = tmp_path / "dying.jsonl"
    with served(model_dir, log) as (base_url, proc):

        def kill_after_four_measured() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                seen = log.read_text().count('"id": "2-r') if log.exists() else 0
                if seen >= 2 + 4:  # the level's two warm-up requests and four measured ones
                    os.killpg(proc.pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_after_four_measured, daemon=True)
        killer.start()
        out = tmp_path / "run"
        path = scenario(tmp_path, base_url, model_dir, rates="[2, 4]", requests=12, batch="[1, 2]")
        run = cli("run", str(path), "--out", str(out), "--no-fidelity", timeout=400)
        killer.join(timeout=1)
    assert run.returncode == 1, run.stderr[-3000:]  # a failed record: the exit code CI sees
    records = results(out)
    tags = [r["run_id"].partition("@")[2] for r in records]
    # point 1: its first level failed with the reason, no second level, its summary says why; point 2: failed
    assert tags == ["2", "max", ""], tags
    lost, summary, second = records
    assert lost["status"] == "failed" and "server lost during the level" in lost["error"]
    assert lost["serving"]["client"]["connection_errors"] + lost["serving"]["client"]["timeouts"] >= 1
    assert lost["serving"]["e2e_s"]["count"] >= 4 and lost["serving"]["failed"] >= 1
    assert any("server stopped answering" in why for why in summary["invalid_reasons"])
    assert second["status"] == "failed" and "cannot reach" in second["error"] and second["precision"] == "server"


def load(tmp_path: Path, matrix: str, serving: bool = True):
    from bench.scenario import load_scenario

    text = textwrap.dedent(f"""
        name: s
        task: text-generation
        model: {{name: tiny-llama}}
        device: cpu
        matrix: {matrix}
        backend_options: {{endpoint: {{base_url: "http://127.0.0.1:9/v1", model: m}}}}
        """)
    if serving:
        text += "serving: {rates: [1], requests: 4, slo: {e2e_p95_s: 1}}\n"
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path)


@pytest.mark.parametrize(
    "matrix,serving,field,message",
    [
        ("{backend: [endpoint]}", True, "matrix.batching", "runs batching `server` only"),
        ("{backend: [endpoint], batching: [server], precision: [int8]}", True, "matrix.precision", "the server's"),
        ("{backend: [endpoint]}", False, "backend_options", "serving scenarios only"),
        ("{backend: [eager], batching: [server]}", True, "matrix.batching[0]", "cannot run on backend 'eager'"),
    ],
)
def test_endpoint_scenario_refuses_what_the_server_owns(tmp_path, matrix, serving, field, message):
    if "eager" in matrix:  # options for a backend the matrix does not run are refused first; drop them
        from bench.scenario import load_scenario

        path = tmp_path / "e.yaml"
        path.write_text(
            "name: s\ntask: text-generation\nmodel: {name: tiny-llama}\ndevice: cpu\n"
            f"matrix: {matrix}\nserving: {{rates: [1], requests: 4}}\n"
        )
        with pytest.raises(BenchInputError) as err:
            load_scenario(path)
    else:
        with pytest.raises(BenchInputError) as err:
            load(tmp_path, matrix, serving)
    assert err.value.field == field and message in err.value.message, str(err.value)


def test_endpoint_options_are_checked(tmp_path):
    from bench.scenario import load_scenario

    path = tmp_path / "o.yaml"
    path.write_text(
        "name: s\ntask: text-generation\nmodel: {name: tiny-llama}\ndevice: cpu\n"
        "matrix: {backend: [endpoint], batching: [server]}\n"
        "backend_options: {endpoint: {base_url: '127.0.0.1:8000', model: m}}\n"
        "serving: {rates: [1], requests: 4}\n"
    )
    with pytest.raises(BenchInputError) as err:
        load_scenario(path)
    assert err.value.field == "backend_options.endpoint.base_url" and "http://" in err.value.message


FAULTS = {  # prompt -> what the scripted server does (a real HTTP server on 127.0.0.1, faults on purpose)
    "ok": "stream the asked tokens and usage",
    "nousage": "stream the asked tokens, no usage",
    "503": "answer HTTP 503",
    "stall": "answer nothing for 5 s",
    "short": "stream 2 tokens and usage saying 2",
    "broken": "stream a chunk that is not JSON",
    "error": "stream an error event",
}


def fault_app(posts: list[str]):
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def sse(obj) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    async def models(request):
        if request.headers.get("authorization", "Bearer sekret") != "Bearer sekret":
            return JSONResponse({"error": "bad key"}, status_code=401)
        return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def completions(request):
        body = await request.json()
        prompt, n = body["prompt"], body["max_tokens"]
        posts.append(prompt)
        if prompt == "503":
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if prompt == "stall":
            await asyncio.sleep(5)

        async def stream():
            count = 2 if prompt == "short" else n
            for i in range(count):
                yield sse({"choices": [{"index": 0, "text": f" t{i}"}]})
                await asyncio.sleep(0.01)
            if prompt == "broken":
                yield "data: {not json\n\n"
            if prompt == "error":
                yield sse({"error": "boom"})
                return
            usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
            yield sse(
                {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
                | ({} if prompt == "nousage" else {"usage": usage})
            )
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/completions", completions, methods=["POST"])])


@contextlib.contextmanager
def fault_server(posts: list[str]):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fault_app(posts), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_client_counts_each_fault_once_and_retries_nothing():
    from bench.backends.endpoint import EndpointOptions
    from bench.serving.client import EndpointClient
    from bench.serving.level import Level
    from bench.serving.loadgen import Request

    posts: list[str] = []
    with fault_server(posts) as base_url:
        options = EndpointOptions(base_url=base_url, model="m", timeout_s=0.5)
        prompts = list(FAULTS)
        reqs = [
            Request(index=i, prompt_ids=[1], new_tokens=4, scheduled_s=0.0, prompt_text=p)
            for i, p in enumerate(prompts)
        ]
        client = EndpointClient(options, tokenizer=None, connections=len(reqs))
        try:
            level = Level(engine=client, requests=reqs, t0=time.perf_counter())
            client.begin_level("f")
            for f in [client.submit(r, level) for r in reqs]:
                f.result(timeout=30)
            stats = client.end_level()
        finally:
            client.close()
    by = dict(zip(prompts, reqs))
    assert sorted(posts) == sorted(prompts)  # one POST per request: nothing retried
    assert all(r.answers == 1 for r in reqs)
    assert stats.http_errors == {"503": 1} and stats.timeouts == 1 and stats.wrong_length == 1
    assert stats.stream_errors == 2 and stats.connection_errors == 0 and stats.connection_waits == 0
    assert stats.token_counts == {"usage": 1, "chunks": 1} and stats.tokens_per_chunk == 1.0
    for name in ("ok", "nousage"):
        r = by[name]
        assert r.error is None and r.tokens_out == 4 and len(r.token_s) == 4 and r.sent_s < r.token_s[0]
    for name in ("503", "stall", "short", "broken", "error"):
        assert by[name].error, name
    assert "HTTP 503" in by["503"].error and "0.5 s" in by["stall"].error and "sent 2" in by["short"].error


def test_a_matrix_may_hold_in_process_and_endpoint_points(tmp_path):
    from bench.scenario import load_scenario

    path = tmp_path / "mixed.yaml"
    path.write_text(
        textwrap.dedent("""
        name: mixed
        task: text-generation
        model: {name: tiny-llama}
        device: cpu
        matrix: {backend: [eager, endpoint], batching: [continuous, server], batch_size: [8]}
        exclude: [{backend: eager, batching: server}, {backend: endpoint, batching: continuous}]
        backend_options: {endpoint: {base_url: "http://127.0.0.1:8000/v1", model: m}}
        serving: {rates: [1, 2], requests: 4, slo: {e2e_p95_s: 1}}
        """)
    )
    specs = load_scenario(path).run_specs(device="cpu")
    assert [(s.backend, s.batching) for s in specs] == [("eager", "continuous"), ("endpoint", "server")]
    assert specs[0].serving == specs[1].serving  # the same load: levels match rate by rate
    assert specs[0].backend_options == {} and specs[1].backend_options["model"] == "m"


@covering(SERVER_START_S, own_s=300)
def test_without_a_tokenizer_prompts_are_words_and_counts_the_servers(model_dir, server, tmp_path, cli):
    base_url, log = server
    path = scenario(tmp_path, base_url, model_dir, name="words", rates="[4]", requests=10)
    path.write_text(path.read_text().replace(f"model: {{name: {model_dir}}}", "model: {name: tiny-llama}"))
    out = tmp_path / "run"
    proc = cli("run", str(path), "--out", str(out), "--no-fidelity", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    level = results(out)[0]
    client = level["serving"]["client"]
    assert level["status"] == "ok" and level["serving"]["answered"] == 10, level["error"]
    assert level["details"]["tokenizer"].startswith("none: tiny-llama is a bundled config")
    # one word per asked token; the server's word-level tokenizer counts exactly that
    assert client["token_counts"] == {"usage": 10} and client["prompt_tokens_mismatch"] == 0
    seen = server_view(log, "4", warmup=2)
    assert len(seen) == 10 and all(e["usage"]["completion_tokens"] == NEW_TOKENS for e in seen)


def test_a_request_waiting_for_a_connection_is_counted_and_sent_when_it_goes_out():
    from bench.backends.endpoint import EndpointOptions
    from bench.serving.client import EndpointClient
    from bench.serving.level import Level
    from bench.serving.loadgen import Request

    posts: list[str] = []
    with fault_server(posts) as base_url:
        options = EndpointOptions(base_url=base_url, model="m", max_connections=1)
        reqs = [Request(index=i, prompt_ids=[1], new_tokens=4, scheduled_s=0.0, prompt_text="ok") for i in range(2)]
        client = EndpointClient(options, connections=len(reqs))
        try:
            level = Level(engine=client, requests=reqs, t0=time.perf_counter())
            client.begin_level("w")
            for f in [client.submit(r, level) for r in reqs]:  # both at once, one connection
                f.result(timeout=30)
            stats = client.end_level()
        finally:
            client.close()
    assert client.connections == 1 and stats.connection_waits == 1 and all(r.error is None for r in reqs)
    first, second = sorted(reqs, key=lambda r: r.sent_s)
    assert second.sent_s >= first.token_s[-1]  # restamped when it got the connection, after the first's answer


def test_api_key_from_its_variable_and_a_refused_key_exits_before_the_sweep(monkeypatch):
    from bench.backends.endpoint import EndpointBackend

    posts: list[str] = []
    with fault_server(posts) as base_url:
        options = {"base_url": base_url, "model": "m", "api_key_env": "BENCH_TEST_KEY"}
        with pytest.raises(BenchInputError) as unset:
            EndpointBackend.preflight(options, "s.yaml")
        monkeypatch.setenv("BENCH_TEST_KEY", "wrong")
        with pytest.raises(BenchInputError) as refused:
            EndpointBackend.preflight(options, "s.yaml")
        monkeypatch.setenv("BENCH_TEST_KEY", "sekret")
        info = EndpointBackend.preflight(options, "s.yaml")
    assert unset.value.field == "backend_options.endpoint.api_key_env" and "is not set" in unset.value.message
    assert refused.value.field == "backend_options.endpoint.base_url" and "HTTP 401" in refused.value.message
    assert info["model"] == {"id": "m", "object": "model"} and posts == ["hello"]  # the 1-token probe


def endpoint_level(repeat: int, goodput: float):
    from bench.results import Record
    from bench.serving.metrics import ServingLevel
    from bench.serving.slo import Attainment

    attained = Attainment(met=40, total=40, fraction=1.0, ci_low=0.91, ci_high=1.0, goodput_per_s=goodput)
    return Record(
        run_id=f"r{repeat}@8",
        point_id="p@8",
        scenario="ep",
        scenario_file="ep.yaml",
        model="m",
        weights="random",
        task="text-generation",
        backend="endpoint",
        precision="server",
        batch_size=8,
        device="cpu",
        repeat=repeat,
        backend_options={"base_url": "http://127.0.0.1:8000/v1", "model": "m"},
        status="ok",
        serving=ServingLevel(
            kind="level", policy="server", arrival="poisson", level=0, requested_rate_per_s=8.0, attainment=attained
        ),
    )


@pytest.mark.parametrize("factor,expected", [(0.7, "regression"), (1.0, "unchanged")])
def test_the_gate_compares_an_endpoints_goodput_level_by_level(tmp_path, factor, expected):
    """A server upgrade gated as any change: four repeats a side, goodput at 8 req/s (hand-made spreads of
    about 1%), 30% less is a regression, the same is unchanged."""
    from bench.gate.compare import compare, load_side
    from bench.gate.config import load_config

    from gate_synth import write_run

    base = [endpoint_level(i, g) for i, g in enumerate([8.0, 8.1, 7.9, 8.05])]
    cur = [endpoint_level(i, g * factor) for i, g in enumerate([8.02, 7.95, 8.08, 7.97])]
    b, c = write_run(tmp_path / "base", base), write_run(tmp_path / "cur", cur)
    result = compare(load_side(str(b)), load_side(str(c)), load_config(None))
    verdicts = {x.metric.name: x.verdict for x in result.comparisons}
    assert verdicts == {"serving.attainment.goodput_per_s": expected}
