"""Per-customer RFM and behaviour features as of a reference date, and the bad-input rules.

Rules for bad silver rows (applied by :func:`split_inputs`, rejected rows go to quarantine with the
reason; never used in features):

* ``null_user_id`` - order, event or return without a customer id (null or blank);
* ``null_timestamp`` - order, event or return without a timestamp;
* ``future_timestamp`` - timestamp later than the moment the job runs;
* ``negative_spend`` - order line or return whose ``quantity * unit_price`` is negative or null.

Rows on or after the reference date are not bad, they are simply outside the "as of" window and are
left out. Net spend (sales minus returns) below zero is clamped to 0 and flagged
(``monetary_clamped``). Customers with events but no orders in the window are kept with
``has_orders = false`` (the job gives them their own segment; they are never part of the fit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopai_spark.quality import Rule, split_valid

FUTURE_TIMESTAMP = "future_timestamp"


def _blank(col: str) -> Column:
    return F.col(col).isNull() | (F.trim(F.col(col)) == "")


def _time_rules(ts_col: str) -> list[Rule]:
    return [Rule("null_timestamp", F.col(ts_col).isNull()),
            Rule(FUTURE_TIMESTAMP, F.coalesce(F.col(ts_col) > F.current_timestamp(), F.lit(False)))]


def _spend_rule() -> Rule:
    return Rule("negative_spend", F.col("quantity") * F.col("unit_price") < 0)


def order_rules() -> list[Rule]:
    """Rules for silver.orders rows (order_id, user_id, order_ts, ...)."""
    return [Rule("null_user_id", _blank("user_id")), *_time_rules("order_ts")]


def order_item_rules() -> list[Rule]:
    """Rules for silver.order_items rows (order_id, sku, quantity, unit_price)."""
    return [_spend_rule()]


def return_rules() -> list[Rule]:
    """Rules for silver.returns rows (user_id, quantity, unit_price, return_ts, ...)."""
    return [Rule("null_user_id", _blank("user_id")), _spend_rule(), *_time_rules("return_ts")]


def event_rules() -> list[Rule]:
    """Rules for silver.events rows (user_id, event_type, event_ts, ...)."""
    return [Rule("null_user_id", _blank("user_id")), *_time_rules("event_ts")]


@dataclass
class Inputs:
    """The silver frames the features are computed from."""

    orders: DataFrame
    order_items: DataFrame
    returns: DataFrame
    products: DataFrame
    events: DataFrame


def split_inputs(inputs: Inputs) -> tuple[Inputs, dict[str, DataFrame]]:
    """Apply the rules above: (valid inputs, ``{source table: rejected rows with reason}``)."""
    checks = {"orders": order_rules(), "order_items": order_item_rules(), "returns": return_rules(),
              "events": event_rules()}
    valid: dict[str, DataFrame] = {"products": inputs.products}
    rejected: dict[str, DataFrame] = {}
    for name, rules in checks.items():
        valid[name], rejected[name] = split_valid(getattr(inputs, name), rules)
    return Inputs(**valid), rejected


def default_reference_date(orders: DataFrame) -> dt.date:
    """The day after the latest order (valid orders expected); ValueError when there are none."""
    latest = orders.agg(F.max(F.to_date("order_ts")).alias("d")).first()["d"]
    if latest is None:
        raise ValueError("segments: silver.orders has no valid orders; nothing to segment")
    return latest + dt.timedelta(days=1)


def customer_features(inputs: Inputs, reference_date: dt.date) -> DataFrame:
    """One row per customer seen in orders or events before ``reference_date`` (00:00 UTC).

    Input: valid silver frames. Output columns: user_id, has_orders, monetary_clamped and the
    features (all DOUBLE): recency_days (days from the last order date to the reference date; null
    without orders), frequency (orders), monetary (net spend = order lines - returns, clamped at 0),
    avg_order_value (monetary / frequency), avg_basket_size (items / frequency), views, cart_adds,
    conversion_rate (purchase events / view events, capped at 1; 0 without views),
    category_diversity (distinct categories bought), tenure_days (days from the first order or event
    to the reference date).
    """
    ref_date = F.lit(reference_date).cast("date")
    before = F.lit(dt.datetime.combine(reference_date, dt.time())).cast("timestamp")
    orders = inputs.orders.filter(F.col("order_ts") < before).select("order_id", "user_id", "order_ts")
    by_order = orders.groupBy("user_id").agg(
        F.countDistinct("order_id").cast("double").alias("frequency"),
        F.max("order_ts").alias("last_order_ts"),
        F.min("order_ts").alias("first_order_ts"),
    )
    lines = (inputs.order_items.join(orders.select("order_id", "user_id"), "order_id")
             .join(inputs.products.select("sku", "category"), "sku", "left"))
    by_line = lines.groupBy("user_id").agg(
        F.sum(F.col("quantity") * F.col("unit_price")).alias("gross"),
        F.sum("quantity").cast("double").alias("items"),
        F.countDistinct("category").cast("double").alias("category_diversity"),
    )
    by_return = (inputs.returns.filter(F.col("return_ts") < before).groupBy("user_id")
                 .agg(F.sum(F.col("quantity") * F.col("unit_price")).alias("returned")))

    def count_type(event_type: str) -> Column:
        return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("double")

    by_event = inputs.events.filter(F.col("event_ts") < before).groupBy("user_id").agg(
        count_type("view").alias("views"), count_type("add_to_cart").alias("cart_adds"),
        count_type("purchase").alias("purchases"), F.min("event_ts").alias("first_event_ts"),
    )
    joined = (by_order.join(by_line, "user_id", "left").join(by_return, "user_id", "left")
              .join(by_event, "user_id", "full"))
    frequency = F.coalesce(F.col("frequency"), F.lit(0.0))
    net = F.coalesce(F.col("gross"), F.lit(0.0)) - F.coalesce(F.col("returned"), F.lit(0.0))
    monetary = F.greatest(net, F.lit(0.0))

    def per_order(value: Column) -> Column:
        return F.when(frequency > 0, value / frequency).otherwise(F.lit(0.0))

    views = F.coalesce(F.col("views"), F.lit(0.0))
    first_seen = F.least(F.col("first_order_ts"), F.col("first_event_ts"))
    return joined.select(
        "user_id",
        (frequency > 0).alias("has_orders"),
        (net < 0).alias("monetary_clamped"),
        F.datediff(ref_date, F.to_date("last_order_ts")).cast("double").alias("recency_days"),
        frequency.alias("frequency"),
        monetary.alias("monetary"),
        per_order(monetary).alias("avg_order_value"),
        per_order(F.coalesce(F.col("items"), F.lit(0.0))).alias("avg_basket_size"),
        views.alias("views"),
        F.coalesce(F.col("cart_adds"), F.lit(0.0)).alias("cart_adds"),
        F.when(views > 0, F.least(F.coalesce(F.col("purchases"), F.lit(0.0)) / views, F.lit(1.0)))
        .otherwise(F.lit(0.0)).alias("conversion_rate"),
        F.coalesce(F.col("category_diversity"), F.lit(0.0)).alias("category_diversity"),
        F.datediff(ref_date, F.to_date(first_seen)).cast("double").alias("tenure_days"),
    )
