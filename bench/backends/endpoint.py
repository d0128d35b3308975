"""endpoint: a serving scenario's levels sent to an OpenAI-compatible HTTP server (vLLM, TGI, SGLang,
`transformers serve`) instead of a model in the worker. Options: the scenario's `backend_options.endpoint`.

The server owns precision and batching: an endpoint point runs batching `server` only, with the matrix's
default precision, and its records say `server` for both plus what the server reports (bench.serving.client).
`preflight` (called by the sweep before anything runs) turns an unreachable URL, an HTTP 4xx/5xx or a model the
server does not serve into BenchInputError. The client itself: bench/serving/client.py; docs/endpoint.md.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from bench.backends.base import Backend, Prepared
from bench.errors import BenchInputError

SERVER = "server"  # what an endpoint's records say for precision and batching
DEFAULT_PRECISION = "fp32"  # the matrix default: the only precision an endpoint point may list


class EndpointOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(description="the API root, e.g. http://127.0.0.1:8000/v1 (…/models, …/completions)")
    model: str = Field(min_length=1, description="the model id the server serves (as /v1/models lists it)")
    api: Literal["completions", "chat"] = Field("completions", description="/completions or /chat/completions")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (sent as Bearer)")
    timeout_s: PositiveFloat = Field(60.0, description="one request's limit, connect to last byte")
    max_connections: PositiveInt | None = Field(
        None, description="HTTP connections at most (default: one per request of a level, never a client bound)"
    )
    extra_body: dict[str, Any] = Field(
        {}, description="server-specific fields added to every request, e.g. vLLM's {ignore_eos: true}"
    )

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        return url.rstrip("/")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class EndpointBackend(Backend):
    name = "endpoint"
    Options = EndpointOptions
    remote: ClassVar[bool] = True  # no model in the worker; left out of the capability table

    @classmethod
    def unsupported_reason(
        cls, task: str, precision: str, device_type: str, options: dict[str, Any] | None = None
    ) -> str | None:
        from bench.workloads import WORKLOADS
        from bench.workloads.text_generation import TextGeneration

        workload = WORKLOADS.get(task)
        if workload is None or not issubclass(workload, TextGeneration):
            return f"backend endpoint serves text generation (a serving scenario), not {task}"
        return None

    @classmethod
    def check_point(cls, point: dict[str, Any], serving: bool) -> tuple[str, str] | None:
        """(field, message) when a matrix point cannot run on an endpoint: the scenario is refused (exit 2)."""
        if not serving:
            return "backend_options", "backend endpoint runs serving scenarios only: give a serving: section"
        if point.get("batching") != SERVER:
            return (
                "matrix.batching",
                f"behind an endpoint the server batches: backend endpoint runs batching `{SERVER}` only, not "
                f"{point.get('batching')!r}; give matrix.batching: [{SERVER}] or exclude the combination",
            )
        if point["precision"] != DEFAULT_PRECISION:
            return (
                "matrix.precision",
                f"the precision behind an endpoint is the server's (its records say `{SERVER}`): leave the "
                f"endpoint at the default {DEFAULT_PRECISION} and exclude {{backend: endpoint, precision: "
                f"{point['precision']}}}",
            )
        return None

    @classmethod
    def recorded_precision(cls, precision: str) -> str:
        return SERVER  # the server's own: never the matrix placeholder

    @classmethod
    def preflight(cls, options: dict[str, Any], source: str) -> dict[str, Any]:
        """What the server reports (bench.serving.client.probe), or BenchInputError naming the option."""
        from bench.serving.client import EndpointError, probe

        opts = cls.Options.model_validate(options)
        try:
            return probe(opts)
        except EndpointError as exc:
            raise BenchInputError(source, exc.message, f"backend_options.endpoint.{exc.option}") from None

    def prepare(self, model: Any, run: Any, device: Any) -> Prepared:
        raise RuntimeError("backend endpoint runs serving scenarios only (bench.serving.run), nothing to prepare")
