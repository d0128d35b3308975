"""Physical limits: how close each run came to the device it ran on (docs/roofline.md).
calibrate.py (`bench calibrate`, store), datasheets.py (GPU peaks), work.py (analytic FLOPs/bytes),
analysis.py (a record's bounds and efficiency), schema.py (the record's section; imported without torch)."""
