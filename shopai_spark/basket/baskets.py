"""Order lines → baskets: the distinct items (SKUs or categories) of each order.

Rules (docs/basket.md):
- Orders come from silver.orders, optionally restricted to a time window; order lines without an
  order row (or outside the window) are not used.
- A line with a null SKU is counted (``null_sku_lines``) and ignored; repeated lines of the same SKU
  in one order are counted (``duplicate_lines``) and the SKU is kept once.
- At category level a SKU without a category in silver.products is counted (``unmapped_lines``) and
  ignored; several SKUs of one category make one item.
- An order left with no item is an empty basket, one with fewer than ``min_basket_size`` items is
  small, one with more than ``max_basket_size`` items is oversize (a B2B/wholesale outlier): all
  three are counted and left out whole (an oversize basket is not truncated: any truncation would
  invent a basket nobody bought). The rest are the baskets that are mined; supports are fractions
  of their number.
- :func:`last_basket_split` holds out each customer's last usable basket (the recommender
  comparison, ``shopai_spark/harness.py``); the baskets before it are training.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.basket.config import FpGrowthConfig

STATUSES = ("ok", "empty", "small", "oversize")
COUNT_COLUMNS = ("null_sku_lines", "duplicate_lines", "unmapped_lines")


def in_window(orders: DataFrame, config: FpGrowthConfig) -> DataFrame:
    """silver.orders (order_id, order_ts, ...) → the orders inside the configured window.

    ``window_days`` = the last N days before (and including) the latest order's day; the latest
    order date is one small aggregate.
    """
    if config.window_days is not None:
        latest = orders.agg(F.max("order_ts")).first()[0]
        if latest is None:
            return orders
        end = latest.date() + dt.timedelta(days=1)
        start = end - dt.timedelta(days=config.window_days)
        return orders.filter((F.col("order_ts") >= F.lit(start)) & (F.col("order_ts") < F.lit(end)))
    if config.window_start:
        orders = orders.filter(F.col("order_ts") >= F.lit(dt.date.fromisoformat(config.window_start)))
    if config.window_end:
        orders = orders.filter(F.col("order_ts") < F.lit(dt.date.fromisoformat(config.window_end)))
    return orders


def order_baskets(order_items: DataFrame, orders: DataFrame, config: FpGrowthConfig,
                  products: DataFrame | None = None) -> DataFrame:
    """One row per order in the window.

    Input: silver.order_items (order_id, sku, ...), silver.orders (order_id, order_ts, ...) and, at
    category level, silver.products (sku, category).
    Output: order_id, items (array<string>, distinct, sorted), size (int), null_sku_lines,
    duplicate_lines, unmapped_lines (long), status (one of STATUSES).
    """
    lines = (in_window(orders, config).select("order_id")
             .join(order_items.select("order_id", "sku", F.lit(1).alias("line")), "order_id", "left"))
    if config.level == "category":
        if products is None:
            raise ValueError("fpgrowth.level=category needs silver.products")
        categories = products.select("sku", F.col("category").alias("item")).dropDuplicates(["sku"])
        lines = lines.join(categories, "sku", "left")
    else:
        lines = lines.withColumn("item", F.col("sku"))
    # count("line") is 0 for an order without any line (the left join's null row)
    per_sku = lines.groupBy("order_id", "sku").agg(F.count("line").alias("lines"), F.first("item").alias("item"))
    baskets = per_sku.groupBy("order_id").agg(
        F.array_sort(F.collect_set("item")).alias("items"),
        F.sum(F.when(F.col("sku").isNull(), F.col("lines"))).alias("null_sku_lines"),
        F.sum(F.when(F.col("sku").isNotNull(), F.col("lines") - 1)).alias("duplicate_lines"),
        F.sum(F.when(F.col("sku").isNotNull() & F.col("item").isNull(), F.col("lines"))).alias("unmapped_lines"),
    )
    size = F.size("items")
    status = (F.when(size == 0, "empty").when(size < config.min_basket_size, "small")
              .when(size > config.max_basket_size, "oversize").otherwise("ok"))
    return baskets.select("order_id", "items", size.alias("size"),
                          *[F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c) for c in COUNT_COLUMNS],
                          status.alias("status"))


def basket_counts(baskets: DataFrame) -> dict[str, int]:
    """Output of :func:`order_baskets` → {orders, baskets (usable), empty/small/oversize_baskets,
    null_sku_lines, duplicate_lines, unmapped_lines, max_basket_size} (one aggregate row)."""
    row = baskets.agg(
        F.count(F.lit(1)).alias("orders"),
        *[F.sum((F.col("status") == s).cast("long")).alias("baskets" if s == "ok" else f"{s}_baskets")
          for s in STATUSES],
        *[F.sum(c).alias(c) for c in COUNT_COLUMNS],
        F.max(F.when(F.col("status") == "ok", F.col("size"))).alias("max_basket_size"),
    ).first()
    return {k: int(v or 0) for k, v in row.asDict().items()}


def usable(baskets: DataFrame) -> DataFrame:
    """Output of :func:`order_baskets` → the baskets to mine: order_id, items, size."""
    return baskets.filter(F.col("status") == "ok").select("order_id", "items", "size")


def last_basket_split(baskets: DataFrame, orders: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Usable baskets (order_id, items, size; :func:`usable`) and silver.orders (order_id, user_id,
    order_ts) → (training baskets: order_id, user_id, order_ts, items, size; held out: the same
    columns, the last basket (latest order_ts, then order_id) of every customer with at least two).

    A held-out customer's training baskets are those strictly before the held-out one (a second
    basket at the very same time is in neither); every other basket, guest checkouts (null or blank
    user_id) included, is a training basket.
    """
    guest = F.col("user_id").isNull() | (F.trim("user_id") == "")
    dated = baskets.join(orders.select("order_id", "user_id", "order_ts"), "order_id")
    per_customer = Window.partitionBy("user_id", F.when(guest, F.col("order_id")))   # a guest basket: alone
    marked = dated.withColumn("_pos", F.row_number().over(per_customer.orderBy(F.desc("order_ts"),
                                                                                F.desc("order_id")))) \
        .withColumn("_cut", F.when(F.count(F.lit(1)).over(per_customer) >= 2, F.max("order_ts").over(per_customer)))
    columns = ("order_id", "user_id", "order_ts", "items", "size")
    held_out = marked.where(F.col("_cut").isNotNull() & (F.col("_pos") == 1)).select(*columns)
    train = marked.where(F.col("_cut").isNull() | (F.col("order_ts") < F.col("_cut"))).select(*columns)
    return train, held_out
