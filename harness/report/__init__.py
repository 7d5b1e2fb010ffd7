"""`harness report`: figures, a self-contained index.html and report.md for one or more runs.

The report draws and renders; every number comes from `harness.analysis.metrics.summarize`.

    report/
      build.py     build_report: load, summarize, draw, write (the entry point)
      data.py      load run directories (flat rows + per-row logprob sums)
      shape.py     labels, metric choice, pivots (reshaping only)
      figures.py   matplotlib figures → PNG bytes
      html.py      index.html (escaped, no script, no URL)
      markdown.py  report.md
"""

from harness.report.build import Report, ReportOptions, build_report, scorers_for

__all__ = ["Report", "ReportOptions", "build_report", "scorers_for"]
