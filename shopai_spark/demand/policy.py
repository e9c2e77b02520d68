"""Inventory policy backtest: a continuous-review (s, Q) policy simulated over the report period
with the forecasts made at each origin (no future data), per SKU in one pandas group.

Each day ``d`` of the report period uses the plan of the latest origin on or before ``d``: reorder
point ``s`` = the service-level quantile of lead-time demand, order quantity ``Q`` = max(1,
ceil(mean lead-time forecast)). The SKU starts with ``ceil(s_0 + Q_0)`` units on hand and nothing on
order. Each day: orders due arrive; the day's actual units are served from stock (what is missing
is lost, not back-ordered); then, while the inventory position (on hand + on order) is at or below
``s``, an order of ``Q`` is placed at the day's end and arrives after the next L =
``lead_time_days`` days (their demand is the lead-time demand the reorder point covers).

Per SKU: ``demand`` and ``served`` units (fill rate = served / demand), ``cycles`` (replenishment
cycles: from one arrival to the next, both in the period) and ``cycles_in_stock`` (of those, the ones
with no lost unit: the cycle service level a reorder point at the service-level quantile aims for),
``stock_days`` (sum of end-of-day stock) and ``days``. A stock-out is one cycle's: the one that
ends at the next arrival (counting it against every order whose lead time covers the day would
count it several times when orders overlap).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

SIMULATION_SCHEMA = ("sku string, demand_class string, demand double, served double, cycles long, "
                     "cycles_in_stock long, stock_days double, days long")


def simulate_sku(days: pd.DataFrame, lead_time_days: int) -> dict:
    """One SKU's days (date, units, reorder_point, forecast; any order) → the figures of the module
    docstring (without sku and class)."""
    days = days.sort_values("date")
    units = days["units"].to_numpy(dtype=float)
    points = days["reorder_point"].to_numpy(dtype=float)
    quantities = np.maximum(1.0, np.ceil(days["forecast"].to_numpy(dtype=float)))
    n = len(units)
    on_hand = math.ceil(points[0] + quantities[0])
    arrivals = np.zeros(n + lead_time_days + 2)
    lost = np.zeros(n)
    served = stock = 0.0
    for t in range(n):
        on_hand += arrivals[t]
        sold = min(units[t], on_hand)
        lost[t] = units[t] - sold
        served += sold
        on_hand -= sold
        stock += on_hand
        position = on_hand + arrivals[t + 1:].sum()
        while position <= points[t]:
            arrivals[t + lead_time_days + 1] += quantities[t]
            position += quantities[t]
    arrival_days = np.flatnonzero(arrivals[:n])
    cycles = list(zip(arrival_days[:-1], arrival_days[1:], strict=True))
    in_stock = sum(1 for start, end in cycles if lost[start:end].sum() == 0)
    return {"demand": float(units.sum()), "served": served, "cycles": len(cycles), "cycles_in_stock": in_stock,
            "stock_days": stock, "days": n}


def simulate(days: DataFrame, plans: DataFrame, origins: tuple, step_days: int, lead_time_days: int) -> DataFrame:
    """Panel days (sku, date, units) up to the end date and plans (sku, origin, demand_class,
    forecast, reorder_point) at the report ``origins`` → :data:`SIMULATION_SCHEMA`, one row per SKU
    with a plan at every report origin."""
    first_origin = origins[0]
    complete = plans.groupBy("sku").count().filter(F.col("count") == len(origins)).select("sku")
    plans = plans.join(complete, "sku")
    since = F.datediff("date", F.lit(first_origin))
    origin = F.date_add(F.lit(first_origin), (F.floor(since / step_days) * step_days).cast("int"))
    planned = (days.filter(since >= 0).select("sku", "date", F.col("units").cast("double").alias("units"),
                                              origin.alias("origin"))
               .join(plans.select("sku", "origin", "demand_class", "forecast", "reorder_point"), ["sku", "origin"]))

    def per_sku(key, pdf):  # no type hints: Spark would try to read an eval type from them
        first_class = pdf.sort_values("date")["demand_class"].iloc[0]
        return pd.DataFrame([{"sku": key[0], "demand_class": first_class, **simulate_sku(pdf, lead_time_days)}])

    return planned.groupBy("sku").applyInPandas(per_sku, schema=SIMULATION_SCHEMA)


def service_figures(simulated: DataFrame, key: F.Column) -> DataFrame:
    """Simulated SKUs → class, simulated_service_level, simulated_fill_rate, average_stock, skus (a
    ratio is null when its denominator is 0: no cycle ended, or no demand)."""
    return simulated.groupBy(key.alias("class")).agg(
        F.try_divide(F.sum("cycles_in_stock"), F.sum("cycles")).alias("simulated_service_level"),
        F.try_divide(F.sum("served"), F.sum("demand")).alias("simulated_fill_rate"),
        F.try_divide(F.sum("stock_days"), F.sum("days")).alias("average_stock"),
        F.count("*").alias("skus"))
