"""Per-customer RFM and behaviour features as of a reference date, and the bad-input rules.

Rules for bad silver rows (applied by :func:`split_inputs`, rejected rows go to quarantine with the
reason; never used in features):

* ``blank_user_id`` - order or return whose customer id is an empty or blank string;
* ``null_user_id`` - event without a customer id (null or blank);
* ``null_timestamp`` - order, event or return without a timestamp;
* ``future_timestamp`` - timestamp later than the moment the job runs;
* ``negative_spend`` - order line or return whose ``quantity * unit_price`` is negative or null.

Guest checkouts: an order or return whose ``user_id`` is null is a guest's (silver contract, see
:mod:`shopai_spark.schemas`). It is not bad data and passes the rules, but belongs to no customer:
:func:`customer_features` leaves it (and the order's lines) out and :func:`guest_counts` counts it.

Rows on or after the reference date are not bad, they are simply outside the "as of" window and are
left out. Net spend (sales minus returns) below zero is clamped to 0 and flagged
(``monetary_clamped``). Customers with events but no orders in the window are kept with
``has_orders = false`` (the job gives them their own segment; they are never part of the fit).

Optional inputs: a shop with an order export only has no silver.events (``Inputs.events`` is None):
the behaviour features :data:`~shopai_spark.segment.config.EVENT_FEATURES` are then null for every
customer (unknown, not zero), tenure starts at the first order and every customer has orders.
Without product categories (``Inputs.products`` is None: no silver.products, or products derived
from order lines that carry no category) ``category_diversity`` is null.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopai_spark.quality import Rule, missing_value, split_valid
from shopai_spark.segment.config import EVENT_FEATURES

FUTURE_TIMESTAMP = "future_timestamp"


def _time_rules(ts_col: str) -> list[Rule]:
    return [missing_value(ts_col),
            Rule(FUTURE_TIMESTAMP, F.coalesce(F.col(ts_col) > F.current_timestamp(), F.lit(False)))]


def _spend_rule() -> Rule:
    return Rule("negative_spend", F.col("quantity") * F.col("unit_price") < 0)


def order_rules() -> list[Rule]:
    """Rules for silver.orders rows (order_id, user_id, order_ts, ...); a null user_id (guest) passes."""
    return [missing_value("user_id", null_allowed=True), *_time_rules("order_ts")]


def order_item_rules() -> list[Rule]:
    """Rules for silver.order_items rows (order_id, sku, quantity, unit_price)."""
    return [_spend_rule()]


def return_rules() -> list[Rule]:
    """Rules for silver.returns rows (user_id, quantity, unit_price, return_ts, ...); a null user_id
    (guest) passes."""
    return [missing_value("user_id", null_allowed=True), _spend_rule(), *_time_rules("return_ts")]


def event_rules() -> list[Rule]:
    """Rules for silver.events rows (user_id, event_type, event_ts, ...)."""
    return [missing_value("user_id"), *_time_rules("event_ts")]


@dataclass
class Inputs:
    """The silver frames the features are computed from; ``events`` and ``products`` are None when
    the shop has no such data (see the module docstring)."""

    orders: DataFrame
    order_items: DataFrame
    returns: DataFrame
    products: DataFrame | None
    events: DataFrame | None


def split_inputs(inputs: Inputs) -> tuple[Inputs, dict[str, DataFrame]]:
    """Apply the rules above: (valid inputs, ``{source table: rejected rows with reason}``); a
    missing (None) input stays None and has no entry in the rejected rows."""
    checks = {"orders": order_rules(), "order_items": order_item_rules(), "returns": return_rules(),
              "events": event_rules()}
    valid: dict[str, DataFrame | None] = {"products": inputs.products, "events": None}
    rejected: dict[str, DataFrame] = {}
    for name, rules in checks.items():
        frame = getattr(inputs, name)
        if frame is not None:
            valid[name], rejected[name] = split_valid(frame, rules)
    return Inputs(**valid), rejected


def guest_counts(inputs: Inputs, reference_date: dt.date) -> dict[str, int]:
    """Guest checkouts left out of the customer features: ``{"guest_orders_skipped": orders,
    "guest_returns_skipped": returns}`` with a null user_id before ``reference_date`` (valid
    inputs expected)."""
    before = F.lit(dt.datetime.combine(reference_date, dt.time())).cast("timestamp")

    def guests(frame: DataFrame, ts_col: str) -> int:
        return frame.filter(F.col("user_id").isNull() & (F.col(ts_col) < before)).count()

    return {"guest_orders_skipped": guests(inputs.orders, "order_ts"),
            "guest_returns_skipped": guests(inputs.returns, "return_ts")}


def unavailable_features(inputs: Inputs) -> list[str]:
    """Features that are null for every customer because their input is missing (None)."""
    return [*(EVENT_FEATURES if inputs.events is None else ()),
            *(("category_diversity",) if inputs.products is None else ())]


def default_reference_date(orders: DataFrame) -> dt.date:
    """The day after the latest order (valid orders expected); ValueError when there are none."""
    latest = orders.agg(F.max(F.to_date("order_ts")).alias("d")).first()["d"]
    if latest is None:
        raise ValueError("segments: silver.orders has no valid orders; nothing to segment")
    return latest + dt.timedelta(days=1)


def customer_features(inputs: Inputs, reference_date: dt.date) -> DataFrame:
    """One row per customer seen in orders or events before ``reference_date`` (00:00 UTC).

    Input: valid silver frames (guest orders and returns, null user_id, are left out). Output
    columns: user_id, has_orders, monetary_clamped and the features (all DOUBLE): recency_days (days
    from the last order date to the reference date; null without orders), frequency (orders),
    monetary (net spend = order lines - returns, clamped at 0), avg_order_value (monetary /
    frequency), avg_basket_size (items / frequency), views, cart_adds, conversion_rate (purchase
    events / view events, capped at 1; 0 without views; these three null without events),
    category_diversity (distinct categories bought; null without products), tenure_days (days from
    the first order or event to the reference date).
    """
    ref_date = F.lit(reference_date).cast("date")
    before = F.lit(dt.datetime.combine(reference_date, dt.time())).cast("timestamp")
    orders = (inputs.orders.filter(F.col("user_id").isNotNull() & (F.col("order_ts") < before))
              .select("order_id", "user_id", "order_ts"))
    by_order = orders.groupBy("user_id").agg(
        F.countDistinct("order_id").cast("double").alias("frequency"),
        F.max("order_ts").alias("last_order_ts"),
        F.min("order_ts").alias("first_order_ts"),
    )
    lines = inputs.order_items.join(orders.select("order_id", "user_id"), "order_id")
    diversity: list[Column] = []
    category_diversity = F.lit(None).cast("double")
    if inputs.products is not None:
        lines = lines.join(inputs.products.select("sku", "category"), "sku", "left")
        diversity = [F.countDistinct("category").cast("double").alias("category_diversity")]
        category_diversity = F.coalesce(F.col("category_diversity"), F.lit(0.0))
    by_line = lines.groupBy("user_id").agg(
        F.sum(F.col("quantity") * F.col("unit_price")).alias("gross"),
        F.sum("quantity").cast("double").alias("items"),
        *diversity,
    )
    by_return = (inputs.returns.filter(F.col("user_id").isNotNull() & (F.col("return_ts") < before))
                 .groupBy("user_id").agg(F.sum(F.col("quantity") * F.col("unit_price")).alias("returned")))
    joined = by_order.join(by_line, "user_id", "left").join(by_return, "user_id", "left")
    if inputs.events is not None:
        joined = joined.join(event_counts(inputs.events, before), "user_id", "full")
        behaviour = _behaviour_features()
        first_event = F.col("first_event_ts")
    else:
        behaviour = [F.lit(None).cast("double").alias(name) for name in EVENT_FEATURES]
        first_event = F.lit(None).cast("timestamp")
    frequency = F.coalesce(F.col("frequency"), F.lit(0.0))
    net = F.coalesce(F.col("gross"), F.lit(0.0)) - F.coalesce(F.col("returned"), F.lit(0.0))
    monetary = F.greatest(net, F.lit(0.0))

    def per_order(value: Column) -> Column:
        return F.when(frequency > 0, value / frequency).otherwise(F.lit(0.0))

    first_seen = F.least(F.col("first_order_ts"), first_event)
    return joined.select(
        "user_id",
        (frequency > 0).alias("has_orders"),
        (net < 0).alias("monetary_clamped"),
        F.datediff(ref_date, F.to_date("last_order_ts")).cast("double").alias("recency_days"),
        frequency.alias("frequency"),
        monetary.alias("monetary"),
        per_order(monetary).alias("avg_order_value"),
        per_order(F.coalesce(F.col("items"), F.lit(0.0))).alias("avg_basket_size"),
        *behaviour,
        category_diversity.alias("category_diversity"),
        F.datediff(ref_date, F.to_date(first_seen)).cast("double").alias("tenure_days"),
    )


def event_counts(events: DataFrame, before: Column) -> DataFrame:
    """Valid silver.events rows earlier than ``before`` → one row per user: user_id, views,
    cart_adds, purchases (DOUBLE counts), first_event_ts."""
    def count_type(event_type: str) -> Column:
        return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("double")

    return events.filter(F.col("event_ts") < before).groupBy("user_id").agg(
        count_type("view").alias("views"), count_type("add_to_cart").alias("cart_adds"),
        count_type("purchase").alias("purchases"), F.min("event_ts").alias("first_event_ts"),
    )


def _behaviour_features() -> list[Column]:
    """The :data:`EVENT_FEATURES` columns from :func:`event_counts` (null counts → 0)."""
    views = F.coalesce(F.col("views"), F.lit(0.0))
    return [
        views.alias("views"),
        F.coalesce(F.col("cart_adds"), F.lit(0.0)).alias("cart_adds"),
        F.when(views > 0, F.least(F.coalesce(F.col("purchases"), F.lit(0.0)) / views, F.lit(1.0)))
        .otherwise(F.lit(0.0)).alias("conversion_rate"),
    ]
