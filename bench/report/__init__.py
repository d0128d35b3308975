"""Comparative reports from run directories: tables with baseline ratios, charts, markdown/HTML/CSV.

runs.py loads run directories, points.py aggregates repeats and finds baselines, tables.py and charts.py
turn points into tables and figures, render.py writes markdown and HTML, build.py puts the report together.
"""

from bench.report.build import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
