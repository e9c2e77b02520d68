"""Planted daily demand per SKU with its truth: the series the demand bench and tests forecast.

Unlike the shop (:mod:`~shopai_spark.generate.shop`), whose daily units come out of customers'
planned orders, these series are drawn SKU by SKU from a known process, so each SKU's demand class
and its expected units on every day are known exactly.

Each SKU gets a planted Syntetos–Boylan class (:data:`CLASSES`, in shares where intermittent and
lumpy series are most of the catalogue, as in retail) and the two things a class is made of:

* how often it sells: on day ``d`` with probability ``occurrence × ratio_d``. ``ratio_d`` <= 1 is
  the weekly pattern (a weekday is ``1 / (1 + weekend_uplift)`` of a weekend day) times the trend
  ``exp(trend × (d − peak) / days)`` (``trend`` is the log change over the period; the peak is the
  period's last day for a growing SKU, its first for a declining one). Smooth and erratic SKUs sell
  on most days (average interval below the 1.32 cut-off), intermittent and lumpy ones on 5-55 %;
* how much on a selling day: ``size_offset + G`` units, ``G`` geometric (failures before the first
  success, success probability ``size_q``), mean ``size_offset + (1 − q) / q``. Smooth and
  intermittent sizes vary little (CV² <= 0.30), erratic and lumpy ones a lot (CV² = 1 − q >= 0.7);
  the cut-off is 0.49.

So a day's ``expected_units`` is exactly ``occurrence × ratio_d × mean_size``. A share
:data:`LAUNCH_SHARE` of the SKUs launches in the first half of the period (no day before launch).
Every selling day has views; a day without a sale has views with probability :data:`BROWSE_SHARE`.
Randomness is :func:`~shopai_spark.generate.draws.uniform`: the same rows on any cluster layout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopai_spark.generate.draws import between, choose, lookup, uniform


@dataclass(frozen=True)
class PlantedClass:
    """The ranges a demand class draws its SKUs' parameters from (uniform in each)."""

    name: str
    share: float                      # share of the SKUs
    occurrence: tuple[float, float]   # peak probability of a sale on a day
    size_offset: tuple[int, int]      # smallest units on a selling day
    size_q: tuple[float, float]       # geometric success probability of the units above the offset
    max_weekend_uplift: float
    max_trend: float                  # |log change over the period|


CLASSES = (
    PlantedClass("smooth", 0.20, (0.93, 0.99), (2, 12), (0.5, 0.5), 0.15, 0.15),
    PlantedClass("erratic", 0.10, (0.93, 0.99), (1, 1), (0.1, 0.3), 0.15, 0.15),
    PlantedClass("intermittent", 0.50, (0.05, 0.55), (1, 1), (0.7, 0.7), 0.5, 0.5),
    PlantedClass("lumpy", 0.20, (0.05, 0.55), (1, 1), (0.1, 0.3), 0.5, 0.5),
)
LAUNCH_SHARE = 0.1
BROWSE_SHARE = 0.3


def planted_skus(spark: SparkSession, skus: int, days: int, seed: int) -> DataFrame:
    """One row per SKU with its planted demand process (see the module docstring).

    Returns: sku_index (BIGINT), sku (``SKU-00001``), demand_class, occurrence, size_offset (INT),
    size_q, weekend_uplift, trend (DOUBLE), launch_day (INT, 0 for most SKUs), mean_size (DOUBLE,
    expected units on a selling day)."""
    idx = F.col("sku_index")
    klass = choose(uniform(seed, "demand_class", idx), [c.share for c in CLASSES])

    def drawn(field: str, salt: str) -> Column:
        low = lookup([getattr(c, field)[0] for c in CLASSES], klass)
        high = lookup([getattr(c, field)[1] for c in CLASSES], klass)
        return low + uniform(seed, salt, idx) * (high - low)

    def signed(field: str, salt: str) -> Column:
        return lookup([getattr(c, field) for c in CLASSES], klass) * (2 * uniform(seed, salt, idx) - 1)

    offsets = [lookup([c.size_offset[i] for c in CLASSES], klass) for i in (0, 1)]
    late = uniform(seed, "launch", idx) < LAUNCH_SHARE
    planted = spark.range(skus).select(F.col("id").alias("sku_index")).select(
        "sku_index",
        F.format_string("SKU-%05d", idx + 1).alias("sku"),
        lookup([c.name for c in CLASSES], klass).alias("demand_class"),
        drawn("occurrence", "occurrence").alias("occurrence"),
        between(uniform(seed, "size_offset", idx), *offsets).alias("size_offset"),
        drawn("size_q", "size_q").alias("size_q"),
        F.abs(signed("max_weekend_uplift", "weekend_uplift")).alias("weekend_uplift"),
        signed("max_trend", "trend").alias("trend"),
        F.when(late, F.floor(uniform(seed, "launch_day", idx) * days / 2)).otherwise(0).cast("int").alias("launch_day"),
    )
    return planted.withColumn("mean_size", F.col("size_offset") + (1 - F.col("size_q")) / F.col("size_q"))


def _ratio(day: Column, date: Column, days: int) -> Column:
    """The day's share (<= 1) of the SKU's peak selling probability: weekly pattern × trend."""
    weekday = F.when(F.dayofweek(date).isin(1, 7), F.lit(1.0)).otherwise(1.0 / (1.0 + F.col("weekend_uplift")))
    from_peak = F.when(F.col("trend") >= 0, day - (days - 1)).otherwise(day) / float(days)
    return weekday * F.exp(F.col("trend") * from_peak)


def daily_demand(planted: DataFrame, days: int, end_date: dt.date, seed: int) -> DataFrame:
    """Planted SKUs (:func:`planted_skus`) → one row per SKU and day from its launch to ``end_date``.

    Returns: sku, date (DATE), units (BIGINT, 0 on days without a sale), expected_units (DOUBLE, the
    truth: the process's mean that day), views (BIGINT)."""
    first = end_date - dt.timedelta(days=days - 1)
    cells = planted.select("*", F.explode(F.sequence(F.col("launch_day"), F.lit(days - 1))).alias("day"))
    key = (F.col("sku_index"), F.col("day"))
    date = F.date_add(F.lit(first), F.col("day"))
    probability = F.col("occurrence") * _ratio(F.col("day"), date, days)
    sells = uniform(seed, "sells", *key) < probability
    # geometric by inversion: 1 - u is in (0, 1]
    failures = F.floor(F.log(1.0 - uniform(seed, "size", *key)) / F.log(1.0 - F.col("size_q")))
    units = F.when(sells, F.col("size_offset") + failures).otherwise(0).cast("long")
    browsed = sells | (uniform(seed, "browsed", *key) < BROWSE_SHARE)
    views = F.when(browsed, 1 + F.floor(uniform(seed, "views", *key) * 20)).otherwise(0).cast("long")
    return cells.select("sku", date.alias("date"), units.alias("units"),
                        (probability * F.col("mean_size")).alias("expected_units"), views.alias("views"))
