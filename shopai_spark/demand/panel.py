"""Daily per-SKU panel: sales and activity aggregates on a calendar-complete grid.

Demand is gross units sold: ``silver.order_items`` holds sales only (the ingest rule moves
cancellations/returns to ``silver.returns``), so returns are not subtracted. Dates are UTC days.

Rules for bad input (every dropped line is counted by :func:`line_issue_counts`):

* an order line whose order is missing (``orphan_item``), whose quantity is not positive
  (``nonpositive_quantity``) or whose day is outside ``[start_date, end_date]``
  (``before_start_date`` / ``after_end_date``) is left out of the panel;
* a line with a null or zero unit price counts as demand (units) but not in prices: ``avg_price``
  averages priced units only and is null on a day without them (``zero_or_null_price`` counts
  such lines, kept).

Every order counts, guest checkouts (null ``user_id``) included: the panel never reads the user.
Activity (views, cart adds) comes from ``silver.events``; a shop without that table passes
``activity=None`` and gets null ``views`` / ``cart_adds`` (unknown, not zero) and SKU lives that
end by sales alone.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# Reasons a line is left out of the panel (``zero_or_null_price`` lines are kept and counted).
DROP_REASONS = ("orphan_item", "nonpositive_quantity", "before_start_date", "after_end_date")
PANEL_COLUMNS = ("sku", "date", "first_sale_date", "units", "revenue", "orders", "avg_price", "views",
                 "cart_adds")


def order_lines(orders: DataFrame, order_items: DataFrame) -> DataFrame:
    """silver.order_items (order_id, sku, quantity, unit_price) + silver.orders (order_id, order_ts)
    → order_id, sku, quantity, unit_price, date (UTC day of the order; null when the order is missing)."""
    days = orders.select("order_id", F.to_date("order_ts").alias("date"))
    return order_items.select("order_id", "sku", "quantity", "unit_price").join(days, "order_id", "left")


def _issue_conditions(start_date: dt.date | None, end_date: dt.date) -> dict[str, Column]:
    """Reason → condition that is true when a line (see :func:`order_lines`) has that issue."""
    date = F.col("date")
    start = F.lit(start_date) if start_date else F.lit(None).cast("date")
    return {
        "orphan_item": date.isNull(),
        "nonpositive_quantity": F.coalesce(F.col("quantity") <= 0, F.lit(True)),
        "before_start_date": F.coalesce(date < start, F.lit(False)),
        "after_end_date": F.coalesce(date > F.lit(end_date), F.lit(False)),
        "zero_or_null_price": F.coalesce(F.col("unit_price") <= 0, F.lit(True)),
    }


def line_issue_counts(lines: DataFrame, start_date: dt.date | None, end_date: dt.date) -> dict[str, int]:
    """{reason: lines} for every reason of :data:`DROP_REASONS` plus ``zero_or_null_price`` (one pass)."""
    conditions = _issue_conditions(start_date, end_date)
    row = lines.agg(*[F.sum(c.cast("long")).alias(r) for r, c in conditions.items()]).first()
    return {reason: int(row[reason] or 0) for reason in conditions}


def valid_lines(lines: DataFrame, start_date: dt.date | None, end_date: dt.date) -> DataFrame:
    """Lines without any of :data:`DROP_REASONS` (same columns)."""
    conditions = _issue_conditions(start_date, end_date)
    dropped = F.lit(False)
    for reason in DROP_REASONS:
        dropped = dropped | conditions[reason]
    return lines.filter(~dropped)


def daily_sales(lines: DataFrame) -> DataFrame:
    """Valid order lines → one row per sku and day with sales:
    sku, date, units (long), revenue (double), orders (long), priced_units (long), priced_revenue (double)."""
    priced = F.coalesce(F.col("unit_price") > 0, F.lit(False))
    qty = F.col("quantity").cast("long")
    line_revenue = qty * F.coalesce(F.col("unit_price"), F.lit(0.0))
    return lines.groupBy("sku", "date").agg(
        F.sum(qty).alias("units"),
        F.sum(line_revenue).alias("revenue"),
        F.countDistinct("order_id").alias("orders"),
        F.sum(F.when(priced, qty).otherwise(F.lit(0).cast("long"))).alias("priced_units"),
        F.sum(F.when(priced, line_revenue).otherwise(F.lit(0.0))).alias("priced_revenue"),
    )


def daily_activity(events: DataFrame, start_date: dt.date | None, end_date: dt.date) -> DataFrame:
    """silver.events → sku, date, views (long), cart_adds (long) for days in range with such events."""
    date = F.to_date("event_ts")
    in_range = date <= F.lit(end_date)
    if start_date:
        in_range = in_range & (date >= F.lit(start_date))
    return (events.filter(F.col("event_type").isin("view", "add_to_cart") & in_range)
            .groupBy("sku", date.alias("date"))
            .agg(F.count(F.when(F.col("event_type") == "view", 1)).alias("views"),
                 F.count(F.when(F.col("event_type") == "add_to_cart", 1)).alias("cart_adds")))


def sku_bounds(sales: DataFrame, activity: DataFrame | None, end_date: dt.date, delist_after_days: int) -> DataFrame:
    """Active life of every SKU with a sale → sku, first_sale_date, last_activity_date, grid_end.

    Input: :func:`daily_sales` and :func:`daily_activity` (None without events: sales alone). The
    life starts at the first sale. A SKU with neither a sale nor an event for
    ``delist_after_days`` days counts as delisted from then on:
    ``grid_end = least(end_date, last_activity_date + delist_after_days)``.
    """
    by_sales = sales.groupBy("sku").agg(F.min("date").alias("first_sale_date"), F.max("date").alias("last_sale"))
    if activity is None:
        last = F.col("last_sale")
    else:
        by_events = activity.groupBy("sku").agg(F.max("date").alias("last_event"))
        by_sales = by_sales.join(by_events, "sku", "left")
        last = F.greatest("last_sale", F.coalesce("last_event", "last_sale"))
    return (by_sales.select("sku", "first_sale_date", last.alias("last_activity_date"))
            .withColumn("grid_end", F.least(F.lit(end_date), F.date_add("last_activity_date", delist_after_days))))


def build_panel(sales: DataFrame, activity: DataFrame | None, bounds: DataFrame, from_date: dt.date | None = None,
                extra_day: dt.date | None = None) -> DataFrame:
    """Calendar-complete daily panel: every SKU x day of its life (see :func:`sku_bounds`), zero-filled.

    Input: :func:`daily_sales`, :func:`daily_activity` (None without events: views and cart_adds
    are null on every row), :func:`sku_bounds`. ``from_date`` starts the
    grid later (incremental runs); ``extra_day`` (the day after the end date) adds one forecast-origin
    row for SKUs still active on the end date, with null sales and activity.

    Output: :data:`PANEL_COLUMNS` plus ``prior_last_sale_date`` (last sale before the grid's first
    day; null when the grid starts at the first sale).
    """
    start = F.greatest("first_sale_date", F.lit(from_date)) if from_date else F.col("first_sale_date")
    grid = bounds.select("sku", "first_sale_date", "grid_end", start.alias("grid_start"))
    prior = (sales.join(grid.select("sku", "grid_start"), "sku")
             .filter(F.col("date") < F.col("grid_start"))
             .groupBy("sku").agg(F.max("date").alias("prior_last_sale_date")))
    days = grid.select("sku", "first_sale_date", "grid_end",
                       F.explode(F.sequence("grid_start", "grid_end")).alias("date"))
    if extra_day is not None:
        origin = (grid.filter(F.col("grid_end") == F.date_sub(F.lit(extra_day), 1))
                  .select("sku", "first_sale_date", "grid_end", F.lit(extra_day).alias("date")))
        days = days.unionByName(origin)
    observed = F.col("date") <= F.col("grid_end")

    def filled(column: str, zero: Column) -> Column:
        return F.when(observed, F.coalesce(F.col(column), zero)).alias(column)

    joined = days.join(sales, ["sku", "date"], "left")
    if activity is None:
        counts = [F.lit(None).cast("long").alias(c) for c in ("views", "cart_adds")]
    else:
        joined = joined.join(activity, ["sku", "date"], "left")
        counts = [filled(c, F.lit(0).cast("long")) for c in ("views", "cart_adds")]
    return (joined.join(prior, "sku", "left")
            .select("sku", "date", "first_sale_date",
                    filled("units", F.lit(0).cast("long")),
                    filled("revenue", F.lit(0.0)),
                    filled("orders", F.lit(0).cast("long")),
                    F.when(F.col("priced_units") > 0, F.col("priced_revenue") / F.col("priced_units")).alias("avg_price"),
                    *counts,
                    "prior_last_sale_date"))
