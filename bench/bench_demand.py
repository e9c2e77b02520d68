"""Bench stages demand_features (panel, features and targets written to Delta) and demand_forecast
(the rolling-origin backtest of every model, the choice per demand class, quantiles, the simulated
(s, Q) policy and the inventory signals: :func:`~shopai_spark.demand.evaluation.evaluate`).

The daily sales and activity inputs are built directly with ``spark.range`` (no orders generated):
every tenth SKU ``s`` launches on day ``s % 180`` (the others on day 0); a SKU sells on about 70 %
of its days, with views on about half.

small: 1,000 SKUs x 365 days (about 0.36 M panel rows); large: 10,000 SKUs x 730 days (about 7.2 M
panel rows).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from shopai_spark.demand import features as feats
from shopai_spark.demand import panel as pnl
from shopai_spark.demand.evaluation import evaluate
from shopai_spark.demand.job import PARTITION, SKU_DEMAND_FEATURES
from shopai_spark.tables import Lakehouse, with_run_metadata

SIZES = {"small": {"skus": 1_000, "days": 365}, "large": {"skus": 10_000, "days": 730}}
END = dt.date(2024, 6, 30)
LAUNCH_SPREAD = 180


def synthetic_inputs(spark, skus: int, days: int):
    """(daily_sales, daily_activity) frames shaped like :func:`panel.daily_sales` / :func:`panel.daily_activity`."""
    first = END - dt.timedelta(days=days - 1)
    cells = (spark.range(skus * days)
             .select((F.col("id") % skus).alias("s"), (F.col("id") / skus).cast("int").alias("d"))
             .filter((F.col("s") % 10 != 0) | (F.col("d") >= F.col("s") % LAUNCH_SPREAD))
             .select(F.format_string("SKU%05d", "s").alias("sku"), F.date_add(F.lit(first), F.col("d")).alias("date"),
                     "s", F.rand(1).alias("r"), F.rand(2).alias("v")))
    weekend = F.dayofweek("date").isin(1, 7).cast("int")
    units = (F.col("r") * (4 + (F.col("s") % 7) + 3 * weekend)).cast("long") + 1
    price = 10.0 + (F.col("s") % 50) - F.when(F.col("r") > 0.95, 2.0).otherwise(0.0)
    sales = cells.filter(F.col("r") < 0.7).select(
        "sku", "date", units.alias("units"), (units * price).alias("revenue"), F.lit(1).cast("long").alias("orders"),
        units.alias("priced_units"), (units * price).alias("priced_revenue"))
    activity = cells.filter(F.col("v") < 0.5).select(
        "sku", "date", (F.col("v") * 20).cast("long").alias("views"), (F.col("v") * 4).cast("long").alias("cart_adds"))
    return sales, activity


def run(bench) -> None:
    size = SIZES[bench.size]
    config = bench.config("spark.shuffle_partitions=16")
    spark = bench.spark
    lake = Lakehouse(spark, config.lakehouse)
    demand = config.demand
    with bench.stage("demand_features", **size) as extra:
        sales, activity = synthetic_inputs(spark, size["skus"], size["days"])
        sales, activity = sales.cache(), activity.cache()
        bounds = pnl.sku_bounds(sales, activity, END, demand.delist_after_days)
        panel = pnl.build_panel(sales, activity, bounds, extra_day=END + dt.timedelta(days=1))
        featured = feats.add_features(panel, demand, END).select(*feats.output_columns(demand)).cache()
        table = featured.filter(F.col("date") <= F.lit(END))
        gold = with_run_metadata(table.withColumn(PARTITION, F.trunc("date", "month")), "bench")
        lake.overwrite(gold.repartition(PARTITION), SKU_DEMAND_FEATURES, partition_by=[PARTITION])
        extra["panel_rows"] = lake.read(SKU_DEMAND_FEATURES).count()
        extra["columns"] = len(table.columns)
    with bench.stage("demand_forecast", **size) as extra:
        result = evaluate(featured, END, demand)
        extra["inventory_rows"] = result.signals.count()
        extra.update({k: round(v, 4) for k, v in result.metrics.items()
                      if k.endswith("_all") and k.startswith(("backtest_", "zero_wape", "moving_average_wape",
                                                             "p90_coverage", "simulated_service_level"))})
        extra.update({f"chosen_{name}": model for name, model in result.choice.items()})
    for cached in (featured, sales, activity):
        cached.unpersist()
