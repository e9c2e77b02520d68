"""gold.inventory_signals: per SKU, lead-time demand forecast, safety stock and reorder point.

For every SKU still active on the end date, the forecast origin is the day after it (its features use
data up to the end date). With the better hold-out model (lower WAPE):

* ``forecast_lead_time_units`` = the model's forecast of units over the next ``lead_time_days`` days;
* ``forecast_error_std`` = the sample std of that model's lead-time errors (actual - forecast) over the
  SKU's hold-out rows (``error_std_source = holdout``); with fewer than 2 hold-out rows, the Poisson
  value sqrt(forecast) (``error_std_source = poisson``);
* ``safety_stock_units`` = z x forecast_error_std with z = NormalDist().inv_cdf(service_level)
  (the errors are already over the lead time, so no sqrt(L) scaling);
* ``reorder_point_units`` = forecast_lead_time_units + safety_stock_units.
"""

from __future__ import annotations

import datetime as dt
from statistics import NormalDist

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.demand.config import DemandConfig
from shopai_spark.demand.forecast import GBT, LABEL, ForecastResult, predict

INVENTORY_COLUMNS = ("sku", "as_of_date", "lead_time_days", "service_level", "forecast_model",
                     "forecast_lead_time_units", "forecast_error_std", "error_std_source", "holdout_rows",
                     "safety_stock_units", "reorder_point_units")


def service_z(service_level: float) -> float:
    """z of the standard normal for a cycle service level (0.95 → 1.645)."""
    return NormalDist().inv_cdf(service_level)


def error_spread(holdout: DataFrame, model: str) -> DataFrame:
    """Hold-out predictions (sku, label, <model>) → sku, holdout_rows, error_std (null below 2 rows)."""
    return holdout.groupBy("sku").agg(F.count("*").alias("holdout_rows"),
                                      F.stddev_samp(F.col(LABEL) - F.col(model)).alias("error_std"))


def inventory_signals(origin: DataFrame, result: ForecastResult, config: DemandConfig,
                      end_date: dt.date) -> DataFrame:
    """Forecast-origin rows (:func:`~shopai_spark.demand.forecast.with_model_columns` of the day after
    the end date) → :data:`INVENTORY_COLUMNS`, one row per SKU."""
    scored = predict(result.model, origin) if result.best == GBT else origin
    forecast = F.greatest(F.col(result.best), F.lit(0.0))
    spread = error_spread(result.holdout, result.best)
    from_holdout = F.col("error_std").isNotNull()
    std = F.when(from_holdout, F.col("error_std")).otherwise(F.sqrt("forecast_lead_time_units"))
    z = service_z(config.service_level)
    return (scored.select("sku", forecast.alias("forecast_lead_time_units"))
            .join(spread, "sku", "left")
            .select("sku", F.lit(end_date).alias("as_of_date"), F.lit(config.lead_time_days).alias("lead_time_days"),
                    F.lit(config.service_level).alias("service_level"), F.lit(result.best).alias("forecast_model"),
                    "forecast_lead_time_units", std.alias("forecast_error_std"),
                    F.when(from_holdout, "holdout").otherwise("poisson").alias("error_std_source"),
                    F.coalesce("holdout_rows", F.lit(0).cast("long")).alias("holdout_rows"))
            .withColumn("safety_stock_units", F.col("forecast_error_std") * z)
            .withColumn("reorder_point_units", F.col("forecast_lead_time_units") + F.col("safety_stock_units"))
            .select(*INVENTORY_COLUMNS))
