"""The regression gate: compare.py (match points, check environments, verdicts, exit code) built from
metrics.py (what is compared, which direction), stats.py (bootstrap, intervals, false-alarm control, verdicts),
environment.py (which environment fields must agree), config.py (gate.yaml), render.py (markdown, JSON) and
baselines.py (saved baselines).
"""
