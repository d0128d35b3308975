"""The regression gate's parts: metrics.py (what is compared, which direction), stats.py (hierarchical
bootstrap, intervals, Benjamini–Hochberg, verdicts), config.py (gate.yaml), render.py (markdown, JSON).
bench/compare.py puts them together; bench/baselines.py stores baselines.
"""
