"""Forecast accuracy on backtest rows, as Spark aggregations (nothing large reaches the driver).

Rows hold ``sku``, ``forecast`` (units over the lead time), ``actual`` and ``scale`` (the SKU's
in-sample one-step seasonal-naive MAE at the origin, see :mod:`~shopai_spark.demand.models`):

* ``wape`` = Σ|actual − forecast| / Σ actual;
* ``bias`` = Σ(forecast − actual) / Σ actual (positive: over-forecast);
* ``mase`` (Hyndman): per SKU, the mean of |actual − forecast| / (L × scale) over its rows (the
  lead-time error brought to the daily scale of its denominator), then the mean over SKUs with
  scale > 0;
* ``pinball_<q>`` = mean of max(p (y − Q), (p − 1)(y − Q)) for the quantile column ``q`` at level p;
  ``coverage_<q>`` = share of rows with actual <= Q.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def error() -> Column:
    """actual − forecast."""
    return F.col("actual") - F.col("forecast")


def point_metrics(rows: DataFrame, keys: list[str], lead_time_days: int) -> DataFrame:
    """Backtest rows → keys + wape, bias, mase, rows, skus (one row per key combination)."""
    scaled = F.when(F.col("scale") > 0, F.abs(error()) / (F.lit(float(lead_time_days)) * F.col("scale")))
    per_sku = rows.groupBy(*keys, "sku").agg(
        F.sum(F.abs(error())).alias("abs_error"), F.sum(-error()).alias("over"), F.sum("actual").alias("actual"),
        F.count("*").alias("rows"), F.avg(scaled).alias("sku_mase"))
    total = F.sum("actual")
    return per_sku.groupBy(*keys).agg(
        F.when(total > 0, F.sum("abs_error") / total).alias("wape"),
        F.when(total > 0, F.sum("over") / total).alias("bias"),
        F.avg("sku_mase").alias("mase"),
        F.sum("rows").alias("rows"), F.count("*").alias("skus"))


def with_expected_actuals(rows: DataFrame, expected: DataFrame, lead_time_days: int) -> DataFrame:
    """Backtest rows (sku, origin, ...) → the same rows with ``actual`` = the expected units of the
    ``lead_time_days`` days from the origin, from ``expected`` (sku, date, expected_units: a known
    truth such as a planted one); rows whose lead time ``expected`` does not wholly cover are dropped."""
    days = rows.select("sku", "origin").distinct().select(
        "sku", "origin", F.explode(F.sequence("origin", F.date_add("origin", lead_time_days - 1))).alias("date"))
    truth = days.join(expected, ["sku", "date"]).groupBy("sku", "origin").agg(
        F.sum("expected_units").alias("actual"), F.count("*").alias("_days"))
    covered = truth.filter(F.col("_days") == lead_time_days).drop("_days")
    return rows.drop("actual").join(covered, ["sku", "origin"])


def pinball(quantile: Column, level: float) -> Column:
    """Pinball (quantile) loss of one row at ``level``."""
    gap = F.col("actual") - quantile
    return F.greatest(gap * level, gap * (level - 1.0))


def quantile_metrics(rows: DataFrame, keys: list[str], quantiles: dict[str, float]) -> DataFrame:
    """Rows with actual and one column per quantile name (``quantiles``: name → level) → keys +
    pinball_<name>, coverage_<name>."""
    aggs = []
    for name, level in quantiles.items():
        aggs += [F.avg(pinball(F.col(name), level)).alias(f"pinball_{name}"),
                 F.avg((F.col("actual") <= F.col(name)).cast("double")).alias(f"coverage_{name}")]
    return rows.groupBy(*keys).agg(*aggs)
