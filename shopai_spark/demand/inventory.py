"""gold.inventory_signals: per SKU, the lead-time demand forecast, its quantiles and the reorder point.

For every SKU with a forecast at the serving origin (the day after the end date), the forecast of the
model chosen for its demand class (:func:`~shopai_spark.demand.backtest.choose_models`), or a flagged
fallback (``fallback_reason``):

* ``short_history``: fewer than ``min_history_days`` uncensored days: the mean of its days x L
  (``forecast_model = short_history``);
* ``chosen_model_unavailable``: the chosen model has no forecast for the SKU: the moving average;
* ``fit_failed``: the chosen model failed on the SKU's series: the moving average (model name kept).

Quantiles of lead-time demand are conformal (:func:`~shopai_spark.demand.backtest.with_quantiles`,
calibrated on every backtest origin; ``interval_source`` names the class whose errors were used):
``lead_time_p50_units``, ``lead_time_p90_units``, ``lead_time_service_units`` (the ``service_level``
quantile); ``reorder_point_units`` = that quantile + ``undershoot_units``
(:func:`~shopai_spark.demand.backtest.reorder_point`: the expected units by which the inventory
position falls below the reorder point on the day it crosses it; without it, the simulated cycle
service level of smooth SKUs on the planted bench was 0.85 against 0.95); ``safety_stock_units`` =
reorder point − ``forecast_lead_time_units``.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.demand.backtest import reorder_point, service_quantile
from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.models import SHORT_HISTORY

INVENTORY_COLUMNS = ("sku", "as_of_date", "demand_class", "lead_time_days", "service_level", "forecast_model",
                     "fallback_reason", "history_days", "forecast_lead_time_units", "lead_time_p50_units",
                     "lead_time_p90_units", "lead_time_service_units", "undershoot_units", "reorder_point_units",
                     "safety_stock_units", "interval_source")


def serving_forecasts(rows: DataFrame, chosen: Column) -> DataFrame:
    """Forecast rows at the serving origin (every model; demand_class) → one row per SKU: the chosen
    model's (``chosen``: its name per row), else the short-history fallback, else the moving
    average; + fallback_reason."""
    rank = (F.when(F.col("model") == chosen, 1).when(F.col("model") == SHORT_HISTORY, 2)
            .when(F.col("model") == "moving_average", 3))
    reason = (F.when(F.col("_rank") == 2, F.lit(SHORT_HISTORY))
              .when(F.col("_rank") == 3, F.lit("chosen_model_unavailable"))
              .when(F.col("fit_failed"), F.lit("fit_failed")))
    first = Window.partitionBy("sku").orderBy("_rank")
    return (rows.withColumn("_rank", rank).filter(F.col("_rank").isNotNull())
            .withColumn("_first", F.row_number().over(first)).filter(F.col("_first") == 1)
            .withColumn("fallback_reason", reason).drop("_rank", "_first"))


def inventory_signals(serving: DataFrame, config: DemandConfig, end_date: dt.date) -> DataFrame:
    """Serving rows with quantile columns (:func:`serving_forecasts` then
    :func:`~shopai_spark.demand.backtest.with_quantiles`) → :data:`INVENTORY_COLUMNS`."""
    service = service_quantile(config)
    return serving.select(
        "sku", F.lit(end_date).alias("as_of_date"), "demand_class",
        F.lit(config.lead_time_days).alias("lead_time_days"), F.lit(config.service_level).alias("service_level"),
        F.col("model").alias("forecast_model"), "fallback_reason", "history_days",
        F.col("forecast").alias("forecast_lead_time_units"), F.col("p50").alias("lead_time_p50_units"),
        F.col("p90").alias("lead_time_p90_units"), F.col(service).alias("lead_time_service_units"),
        F.coalesce(F.col("undershoot"), F.lit(0.0)).alias("undershoot_units"),
        reorder_point(config).alias("reorder_point_units"),
        (reorder_point(config) - F.col("forecast")).alias("safety_stock_units"), "interval_source",
    ).select(*INVENTORY_COLUMNS)
