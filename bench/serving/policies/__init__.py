"""Batching policy registry: name -> Policy class."""

from bench.serving.policies.base import Policy
from bench.serving.policies.continuous import ContinuousBatching
from bench.serving.policies.dynamic import DynamicBatching
from bench.serving.policies.none import NoBatching
from bench.serving.policies.server import ServerBatching
from bench.serving.policies.static import StaticBatching

POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (NoBatching, StaticBatching, DynamicBatching, ContinuousBatching, ServerBatching)
}
