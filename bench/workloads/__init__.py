"""Workload registry: task -> Workload class."""

from bench.workloads.base import Workload
from bench.workloads.feature_extraction import FeatureExtraction
from bench.workloads.text_generation import TextGeneration
from bench.workloads.text_to_image import TextToImage

WORKLOADS: dict[str, type[Workload]] = {w.task: w for w in (TextGeneration, FeatureExtraction, TextToImage)}
