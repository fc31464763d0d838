"""The `reports` group's charts: PNG pictures of each trading day (daily_charts, partitioned) and of a range of
days (range_charts, unpartitioned, in the `reports` job), attached to their materializations."""

from spy_pipeline.defs.reports.charts import daily_charts
from spy_pipeline.defs.reports.range_charts import range_charts

REPORT_CHART_ASSETS = [daily_charts]

__all__ = ["REPORT_CHART_ASSETS", "daily_charts", "range_charts"]
