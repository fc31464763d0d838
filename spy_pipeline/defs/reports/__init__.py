"""The `reports` group's charts: PNG pictures of each trading day, attached to their materializations."""

from spy_pipeline.defs.reports.charts import daily_charts

REPORT_CHART_ASSETS = [daily_charts]

__all__ = ["REPORT_CHART_ASSETS", "daily_charts"]
