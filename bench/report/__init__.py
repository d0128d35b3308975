"""Comparative reports from run directories: tables with baseline ratios, charts, markdown/HTML/CSV.

runs.py loads run directories, points.py aggregates repeats and finds baselines, tables.py and charts.py
turn points into tables and figures, render.py writes markdown and HTML, build.py puts the report together.
`write_report` and `ReportFiles` are imported on first use, so readers of points and runs (the gate) do not
import matplotlib and pandas.
"""

__all__ = ["ReportFiles", "write_report"]


def __getattr__(name: str):
    if name in __all__:
        from bench.report import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
