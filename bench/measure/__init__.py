"""Measurement: clocks (host and CUDA events), statistics, memory trackers."""
