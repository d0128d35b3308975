"""Physical limits: how close each run came to the device it ran on.

- calibrate.py  `bench calibrate`: measured memory bandwidth and matmul throughput per dtype, stored per device
- datasheets.py NVIDIA datasheet peaks (bandwidth, dense tensor throughput per dtype), with sources
- work.py       analytic FLOPs and bytes of a decode step, a prefill, an encoder forward
- analysis.py   a record's roofline: achieved rates, bound (memory or compute), fraction of each ceiling
- schema.py     the `roofline` section of a record (pure data; bench.results imports it)

Imports stay lazy here: bench.results imports bench.roofline.schema, which must not pull in torch.
"""
