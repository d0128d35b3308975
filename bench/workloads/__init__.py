"""Workload registry: task -> Workload class.

Extra workloads without editing the package: BENCH_WORKLOAD_MODULES=pkg.mod[,pkg.other] names modules that
each expose `WORKLOAD` (a Workload subclass); they are imported with this registry, in every process.
"""

import importlib
import os

from bench.workloads.base import Workload
from bench.workloads.feature_extraction import FeatureExtraction
from bench.workloads.text_generation import TextGeneration
from bench.workloads.text_to_image import TextToImage

WORKLOADS: dict[str, type[Workload]] = {w.task: w for w in (TextGeneration, FeatureExtraction, TextToImage)}
EXTRA_ENV = "BENCH_WORKLOAD_MODULES"


def _register_extra(names: str) -> None:
    for name in filter(None, (n.strip() for n in names.split(","))):
        try:
            workload = importlib.import_module(name).WORKLOAD
        except (ImportError, AttributeError) as exc:
            raise ImportError(f"{EXTRA_ENV}: cannot register {name!r}: {exc}") from exc
        if not (isinstance(workload, type) and issubclass(workload, Workload)):
            raise ImportError(f"{EXTRA_ENV}: {name}.WORKLOAD is not a Workload subclass")
        if workload.task in WORKLOADS and WORKLOADS[workload.task] is not workload:
            raise ImportError(f"{EXTRA_ENV}: {name} registers task {workload.task!r}, which already exists")
        WORKLOADS[workload.task] = workload


_register_extra(os.environ.get(EXTRA_ENV, ""))
