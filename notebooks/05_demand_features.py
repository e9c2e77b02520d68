# Databricks notebook source
# MAGIC %md
# MAGIC # Per-SKU demand features, forecasts and inventory signals
# MAGIC Builds the calendar-complete daily panel per SKU with leak-free lags, rolling statistics,
# MAGIC calendar, price/promotion signals, demand class and targets (`gold.sku_demand_features`),
# MAGIC runs the rolling-origin backtest of the statsforecast models, the GBT and the baselines (a model
# MAGIC per demand class, quantiles, simulated service level; charts in the MLflow run) and writes
# MAGIC `gold.inventory_signals` (reorder point = the service-level quantile of lead-time demand).
# MAGIC `demand.mode = incremental` replaces only the last `demand.incremental_days` days.

# COMMAND ----------

from shopai_spark.notebook import config_from_widgets, declare_widgets

PARAMETERS = ["demand.mode", "demand.end_date", "demand.horizon", "demand.service_level"]
declare_widgets(dbutils, PARAMETERS)
dbutils.widgets.text("sku", "", "Show this SKU's demand series (empty = the SKU with the most units)")

# COMMAND ----------

from shopai_spark.notebook import run_notebook_job

config = config_from_widgets(dbutils, PARAMETERS)
summary = run_notebook_job("demand_features", config, spark)
print(summary.render())

# COMMAND ----------

from pyspark.sql import functions as F

from shopai_spark.demand.job import INVENTORY_SIGNALS, SKU_DEMAND_FEATURES
from shopai_spark.runs import read_committed
from shopai_spark.tables import Lakehouse

lakehouse = Lakehouse(spark, config.lakehouse)
features = read_committed(lakehouse, SKU_DEMAND_FEATURES)
sku = dbutils.widgets.get("sku") or features.groupBy("sku").agg(F.sum("units").alias("units")) \
    .orderBy(F.desc("units"), "sku").first()["sku"]
display(features.filter(F.col("sku") == sku)
        .select("date", "units", "views", "price", "promo_flag", "units_lag_7", "units_mean_28", "likely_stockout",
                "demand_class", "target_1")
        .orderBy("date"))

# COMMAND ----------

display(read_committed(lakehouse, INVENTORY_SIGNALS).filter(F.col("sku") == sku))
