"""The worker side of a serving point: build the model once, serve every level in this process, and return
one Record per level (run_id / point_id = the point's + "@<level>") plus one summary record ("@max")."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.serving.arrivals import schedule
from bench.serving.level import run_level
from bench.serving.loadgen import Request
from bench.serving.metrics import ServingLevel, level_metrics
from bench.serving.spec import ServingSpec

LENGTH_STREAMS = {"prompt_tokens": 1, "new_tokens": 2, "prompt_ids": 3}  # seed-sequence keys (arrivals use 0)
SWITCH_INTERVAL_S = 0.001  # the generator thread gets the GIL within 1 ms, not Python's default 5 ms


def make_requests(spec: ServingSpec, seed: int, vocab: int, special: set[int]) -> list[Request]:
    """warmup_requests + requests, the same for every level and point with this seed (times set later)."""
    n = spec.warmup_requests + spec.requests
    prompts = spec.prompt_tokens.sample(n, np.random.default_rng([seed, LENGTH_STREAMS["prompt_tokens"]]))
    news = spec.new_tokens.sample(n, np.random.default_rng([seed, LENGTH_STREAMS["new_tokens"]]))
    ids_rng = np.random.default_rng([seed, LENGTH_STREAMS["prompt_ids"]])
    allowed = np.setdiff1d(np.arange(vocab), sorted(special))  # no special tokens inside a prompt
    return [
        Request(
            index=i,
            prompt_ids=allowed[ids_rng.integers(0, allowed.size, int(p))].tolist(),
            new_tokens=int(k),
            scheduled_s=0.0,
            measured=i >= spec.warmup_requests,
        )
        for i, (p, k) in enumerate(zip(prompts, news))
    ]


def fresh(requests: list[Request], times: np.ndarray | None) -> list[Request]:
    return [
        Request(
            index=r.index,
            prompt_ids=r.prompt_ids,
            new_tokens=r.new_tokens,
            measured=r.measured,
            scheduled_s=float(times[i]) if times is not None else 0.0,
            prompt_text=r.prompt_text,
        )
        for i, r in enumerate(requests)
    ]


def client_verdict(
    side: Side, out: ServingLevel, invalid: list[str], status: str, error: str | None, stopped_why: list[str]
) -> tuple[str, str | None]:
    """An endpoint level: the client's counts into its section and reasons; a server that stopped answering
    fails the level (and ends the point: `stopped_why`)."""
    from bench.serving.client import EndpointError, probe

    stats = side.client.end_level()
    out.client = stats
    if stats.connection_waits:
        invalid.append(
            f"{stats.connection_waits} request(s) waited for a free connection (max_connections "
            f"{stats.max_connections}): the client, not the server, bounded concurrency"
        )
    if stats.errors:
        invalid.append(f"client: {stats.summary()}")
    if stats.connection_errors:  # timeouts alone are a slow server, not a lost one
        try:
            probe(side.client.options)
        except EndpointError as exc:
            stopped_why.append(f"the server stopped answering during the level ({exc.message})")
            return "failed", f"server lost during the level: {stats.summary()}; then {exc.message}"
    return status, error


def tag(rate: float | None) -> str:
    return "serial" if rate is None else f"{rate:g}"


@dataclass
class Side:
    """What serves a point's levels: an engine in this process (a model on a backend) or an endpoint client."""

    engine: Any
    template: list[Request]
    cold_costs: dict[str, float]
    details: dict[str, Any]
    parameters: int | None = None
    weight_bytes: int | None = None
    quantization: Any = None
    device_name: str | None = None
    local: bool = True  # False: the model runs elsewhere, so this process's memory is not the server's
    client: Any = None  # bench.serving.client.EndpointClient

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def local_side(run: Any, spec: ServingSpec, device: Any, policy_cls: Any) -> Side:
    """Build the model once on its backend and run one cold call outside every level."""
    import torch

    from bench import models
    from bench.backends import BACKENDS
    from bench.serving.engine import GenerateEngine
    from bench.workloads import WORKLOADS

    torch.manual_seed(run.measure.seed)
    backend = BACKENDS[run.backend](run.backend_options)
    workload_cls = WORKLOADS[run.task]
    ref = models.ModelRef(run.model, run.weights, run.model_kind, run.model_location)
    t0 = time.perf_counter()
    model = workload_cls.build(ref, backend.load_dtype(run.precision, device.type), device, seed=run.measure.seed)
    load_s = time.perf_counter() - t0
    prepared = backend.prepare(model, run, device)
    config = prepared.runnable.config
    eos = config.eos_token_id if config.eos_token_id is not None else config.vocab_size - 1
    eos = eos[0] if isinstance(eos, list) else eos
    special = {t for t in (config.bos_token_id, eos, config.pad_token_id) if isinstance(t, int)}
    engine = GenerateEngine(prepared.runnable, device, pad_id=eos, eos_id=eos)
    template = make_requests(spec, run.measure.seed, config.vocab_size, special)

    t0 = time.perf_counter()  # one cold call outside every level: first-call costs are not a level's
    engine.run(fresh(template[:1], None), time.perf_counter(), lambda *a: None)
    first_call_s = time.perf_counter() - t0
    cold = {**prepared.cold_metrics, **prepared.monitor.cold_metrics()}
    details = {
        "torch_threads": torch.get_num_threads(),
        "switch_interval_s": SWITCH_INTERVAL_S,
        "policy": policy_cls.what,
        **prepared.details,
    }
    return Side(
        engine=engine,
        template=template,
        cold_costs={"load_s": load_s, "first_call_s": first_call_s, **cold},
        details=details,
        parameters=prepared.parameters,
        weight_bytes=prepared.weight_bytes,
        quantization=prepared.quantization,
    )


def load_tokenizer(run: Any) -> tuple[Any, str]:
    """(the model's tokenizer or None, where it came from or why there is none)."""
    if run.model_kind not in ("directory", "hub"):
        return None, f"none: {run.model} is a bundled config without a tokenizer"
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(run.model_location), run.model_location
    except Exception as exc:  # no tokenizer files: prompts of common words, counts from the server
        return None, f"none: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"


def endpoint_side(run: Any, spec: ServingSpec, policy_cls: Any) -> Side:
    """Probe the server (what it reports goes into every record), make the prompts' text with the model's
    tokenizer, and send one cold request outside every level."""
    from bench import models
    from bench.backends import BACKENDS
    from bench.serving.client import EndpointClient, probe, prompt_text
    from bench.serving.level import Level

    options = BACKENDS[run.backend].Options.model_validate(run.backend_options)
    server = probe(options)  # the server may have gone since the sweep's own check: the point fails
    tokenizer, tokenizer_source = load_tokenizer(run)
    if tokenizer is not None:
        vocab, special = len(tokenizer), set(tokenizer.all_special_ids)
    else:
        config = models.load_config(models.ModelRef(run.model, run.weights, run.model_kind, run.model_location))
        vocab = config.vocab_size
        special = {t for t in (config.bos_token_id, config.eos_token_id, config.pad_token_id) if isinstance(t, int)}
    template = make_requests(spec, run.measure.seed, vocab, special)
    for req in template:
        req.prompt_text = prompt_text(req, tokenizer)
    client = EndpointClient(options, tokenizer, connections=len(template))
    try:
        cold = fresh(template[:1], None)[0]
        level = Level(engine=client, requests=[cold], t0=time.perf_counter())
        client.begin_level("cold")
        t0 = time.perf_counter()
        client.submit(cold, level).result(timeout=options.timeout_s + 10)
        first_call_s = time.perf_counter() - t0
        if cold.error:
            raise RuntimeError(f"the first (cold) request failed: {cold.error}")
    except BaseException:
        client.close()
        raise
    details = {
        "switch_interval_s": SWITCH_INTERVAL_S,
        "policy": policy_cls.what,
        "server": server,
        "tokenizer": tokenizer_source,
        "client": {"max_connections": client.connections, "retries": 0, "timeout_s": options.timeout_s},
    }
    return Side(
        engine=client,
        template=template,
        cold_costs={"first_call_s": first_call_s},
        details=details,
        device_name=f"server at {options.base_url}",
        local=False,
        client=client,
    )


class ServerGone(Exception):
    """The endpoint stopped answering during a level: no further level of the point is measured."""


def measure_serving(run: Any) -> list:
    from bench.backends import BACKENDS
    from bench.results import Record, now_iso
    from bench.serving.policies import POLICIES
    from bench.worker import base_record, device_name, resolve_device

    started, t_process = now_iso(), time.perf_counter()
    spec = ServingSpec.model_validate(run.serving)
    device = resolve_device(run.device)
    policy_cls = POLICIES[run.batching]
    remote = BACKENDS[run.backend].remote
    side: Side | None = None

    def record(rate_tag: str, **fields) -> Record:
        base = base_record(run, str(device))
        base.update(run_id=f"{run.run_id}@{rate_tag}", point_id=f"{run.point_id}@{rate_tag}")
        return Record(
            **base,
            device_name=side.device_name if side is not None and side.device_name else device_name(device),
            started_at=started,
            duration_s=time.perf_counter() - t_process,
            **fields,
        )

    reason = None if remote else policy_cls.unsupported_reason(run.backend, device.type)
    if reason:
        return [
            record(
                "max",
                status="unsupported",
                error=reason,
                serving=ServingLevel(
                    kind="summary",
                    policy=run.batching,
                    arrival=spec.arrival,
                    level=0,
                    slo=spec.slo.root,
                    attainment_target=spec.attainment_target,
                ),
            )
        ]

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    side = endpoint_side(run, spec, policy_cls) if remote else local_side(run, spec, device, policy_cls)
    try:
        return serve_levels(run, spec, side, policy_cls, record, device)
    finally:
        side.close()


def serve_levels(run: Any, spec: ServingSpec, side: Side, policy_cls: Any, record: Any, device: Any) -> list:
    """Every level of the point on `side`, then the summary record ("@max")."""
    from bench.backends import BACKENDS
    from bench.measure.memory import MemoryTracker, host_rss_peak_bytes

    template, engine, details = side.template, side.engine, side.details
    policy = policy_cls(run.batch_size, spec.max_queue_delay_ms / 1e3)
    stopped_why: list[str] = []  # the endpoint went away: why the point measured no further level

    records: list = []
    levels: list[ServingLevel] = []

    def measure_level(rate: float | None) -> ServingLevel:
        times = None if rate is None else schedule(spec.arrival, rate, len(template), run.measure.seed, spec.burstiness)
        reqs = fresh(template, times)
        precision = BACKENDS[run.backend].recorded_precision(run.precision)
        where = f"{tag(rate)} req/s, {precision} {run.batching}" if rate else f"one at a time, {run.batching}"
        tracker = MemoryTracker(device)
        if side.client is not None:
            side.client.begin_level(tag(rate))
        with tracker:
            level = run_level(policy, engine, reqs, closed_loop=rate is None, abort_wait_s=spec.abort_after_s)
        stopped = bool(level.generator and level.generator.stopped_early)
        out, invalid, warnings = level_metrics(
            reqs,
            level.batches,
            kind="serial" if rate is None else "level",
            policy=run.batching,
            arrival="one at a time" if rate is None else spec.arrival,
            index=len(levels),
            rate=rate,
            slo=spec.slo,
            target=spec.attainment_target,
            stopped_early=stopped,
            abort_wait_s=spec.abort_after_s,
            where=where,
        )
        out.in_sweep, out.fail_on_slo = spec.rates == "sweep", spec.fail_on_slo
        levels.append(out)
        # A level's figures are its `serving` section (per-request distributions, rates, SLOs); `metrics` is the
        # workload's fixed-batch model and stays empty. Memory and cold costs are the common top-level fields.
        answered = out.e2e_s is not None
        first = next((r.error for r in reqs if r.measured and r.error), None)
        status, error = ("ok", None) if answered else ("failed", f"no measured request was answered: {first}")
        if side.client is not None:
            status, error = client_verdict(side, out, invalid, status, error, stopped_why)
        records.append(
            record(
                tag(rate),
                status=status,
                error=error,
                valid=not invalid,
                invalid_reasons=invalid,
                warnings=warnings,
                details=details,
                parameters=side.parameters,
                weight_bytes=side.weight_bytes,
                quantization=side.quantization,
                serving=out,
                memory=tracker.metrics(host_rss_peak_bytes()) if answered and side.local else None,
                cold_costs=side.cold_costs,
                warmup_calls=spec.warmup_requests,
                measured_time_s=level.duration_s,
            )
        )
        if stopped_why:
            raise ServerGone(stopped_why[0])
        return out

    def passes(out: ServingLevel) -> bool:
        ok = out.meets_slo if out.meets_slo is not None else not out.saturated
        client_bound = bool(out.client and out.client.connection_waits)  # the client limited concurrency
        return (
            bool(ok) and not out.generator_behind and not client_bound and not out.failed and out.answered == out.sent
        )

    try:
        if spec.rates == "sweep":
            from bench.serving.sweep import round3, search

            serial = measure_level(None)
            start = spec.sweep.start_rate_per_s or round3(1 / serial.e2e_s.mean if serial.e2e_s else 1.0)
            search(lambda rate: passes(measure_level(rate)), start, spec.sweep.max_levels, spec.sweep.bisect_steps)
        else:
            for rate in spec.rates:
                measure_level(rate)
    except ServerGone:
        pass  # recorded: the level that lost the server is failed with the reason; the summary says so

    rated = [lv for lv in levels if lv.requested_rate_per_s is not None]
    passing = [lv.requested_rate_per_s for lv in rated if passes(lv)]
    failing = [lv.requested_rate_per_s for lv in rated if not passes(lv)]
    best = max(passing) if passing else None
    above = [r for r in failing if best is None or r > best]
    summary = ServingLevel(
        kind="summary",
        policy=run.batching,
        arrival=spec.arrival,
        level=len(levels),
        slo=spec.slo.root,
        attainment_target=spec.attainment_target,
        max_sustainable_rate_per_s=best,
        highest_passing_rate_per_s=best,
        lowest_failing_rate_per_s=min(above) if above else None,
        alerts=[a for lv in levels for a in lv.alerts],
        levels=[
            {
                "rate_per_s": lv.requested_rate_per_s,
                "passed": passes(lv),
                "attainment": lv.attainment.fraction if lv.attainment else None,
                "saturated": lv.saturated,
                "generator_behind": lv.generator_behind,
            }
            for lv in levels
        ],
    )
    # The gate reads serving.max_sustainable_rate_per_s of this summary (0 when no level met the SLO).
    summary.max_sustainable_rate_per_s = best or 0.0
    level_invalid = [f"level {r.run_id.partition('@')[2]}: {why}" for r in records for why in r.invalid_reasons]
    level_invalid += [f"stopped: {why}" for why in stopped_why]
    records.append(
        record(
            "max",
            status="ok",
            valid=not level_invalid,
            invalid_reasons=level_invalid,
            details=details,
            parameters=side.parameters,
            weight_bytes=side.weight_bytes,
            serving=summary,
            cold_costs=side.cold_costs,
        )
    )
    return records
