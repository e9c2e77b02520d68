"""Feedback → one interaction per (user, item): the input of ALS.

Every source ends in the same columns (``INTERACTION_COLUMNS``):
``user_id`` STRING, ``item_id`` STRING, ``rating`` DOUBLE (implicit: confidence weight, 0 for a
rating kept only to be excluded and evaluated; explicit: the rating), ``ts`` TIMESTAMP (latest
interaction, may be null), ``consumed`` BOOLEAN (the user bought the item; every rated item counts
as consumed), ``relevant`` BOOLEAN (a hit of the ranking metrics when held out: every shop
interaction, a rating >= ``relevant_min_rating``).

Bad rows are never dropped silently: :func:`event_rules` / :func:`rating_rules` are quality rules,
and the job quarantines what breaks them (null ids, unknown event types, NaN / negative weights).
Guest order lines (null or blank user_id) are no bad rows: :func:`order_lines` flags them, the job
counts them and :func:`ordered_items` leaves them out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from shopai_spark.quality import Rule, is_missing, missing_value

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "ts", "consumed", "relevant")
UDATA_SCHEMA = "user_id STRING, item_id STRING, rating STRING, unix_ts STRING"
SECONDS_PER_DAY = 86_400.0


def event_rules(weights: Mapping[str, float]) -> list[Rule]:
    """Rules for silver.events rows used as implicit feedback (reasons in the quarantine table)."""
    return [
        missing_value("user_id"),
        missing_value("sku"),
        Rule("event_type_unweighted", ~F.col("event_type").isin(*weights)),
        missing_value("event_ts"),
    ]


def rating_rules(mode: str) -> list[Rule]:
    """Rules for ratings rows (user_id, item_id, rating[, ts]): ids present, rating a finite number,
    and not negative in implicit mode (a negative confidence breaks implicit ALS)."""
    rating = F.col("rating")
    rules = [
        missing_value("user_id"),
        missing_value("item_id"),
        Rule("rating_not_a_number", rating.isNull() | F.isnan(rating) | (F.abs(rating) == float("inf"))),
    ]
    if mode == "implicit":
        rules.append(Rule("rating_negative", F.coalesce(rating < 0, F.lit(False))))
    return rules


def _decay(ts: Column, half_life_days: float | None, reference: dt.datetime | None, caller: str) -> Column:
    """``0.5 ** (age_days / half_life_days)`` with age = ``reference`` - ``ts`` (ts after the reference:
    age 0); 1.0 without a half-life. A half-life needs a reference (ValueError naming ``caller``)."""
    if half_life_days is None:
        return F.lit(1.0)
    if reference is None:
        raise ValueError(f"{caller}: a half-life needs a reference timestamp")
    now = F.lit(reference.isoformat(sep=" ")).cast("timestamp").cast("double")
    age_days = F.greatest((now - ts.cast("double")) / SECONDS_PER_DAY, F.lit(0.0))
    return F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days)))


def weighted_events(events: DataFrame, weights: Mapping[str, float], half_life_days: float | None = None,
                    reference: dt.datetime | None = None) -> DataFrame:
    """Valid silver.events → interactions (INTERACTION_COLUMNS), one row per (user, sku).

    Each event weighs ``weights[event_type]``, times ``0.5 ** (age_days / half_life_days)`` when a
    half-life is given (age = ``reference`` - event_ts, ``reference`` required then; events after
    ``reference`` count as age 0). Weights are summed per (user, sku); ``consumed`` = any purchase.
    Rows with zero total weight are dropped (e.g. only views with a view weight of 0).
    """
    weight = F.element_at(F.create_map(*[x for k, v in weights.items() for x in (F.lit(k), F.lit(float(v)))]),
                          F.col("event_type"))
    weight = weight * _decay(F.col("event_ts"), half_life_days, reference, "weighted_events")
    aggregated = events.groupBy(F.col("user_id"), F.col("sku").alias("item_id")).agg(
        F.sum(weight).alias("rating"), F.max("event_ts").alias("ts"),
        F.max(F.col("event_type") == "purchase").alias("consumed"), F.lit(True).alias("relevant"))
    return aggregated.filter(F.col("rating") > 0).select(*INTERACTION_COLUMNS)


def order_lines(order_items: DataFrame, orders: DataFrame) -> DataFrame:
    """silver.order_items (order_id, sku, quantity, ...) joined to silver.orders (order_id, user_id,
    order_ts, ...) → user_id, sku, quantity INT, order_ts, guest BOOLEAN (user_id null or blank: a
    guest checkout). Lines without an order row are not used (inner join, as in the basket job)."""
    return order_items.select("order_id", "sku", "quantity").join(
        orders.select("order_id", "user_id", "order_ts"), "order_id").select(
        "user_id", "sku", "quantity", "order_ts", is_missing("user_id").alias("guest"))


def purchased_items(lines: DataFrame) -> DataFrame:
    """:func:`order_lines` → the distinct (user_id, item_id) customers bought, returned or not
    (guest lines left out)."""
    return lines.where(~F.col("guest")).select("user_id", F.col("sku").alias("item_id")).distinct()


def quantity_weight(units: Column, scheme: str) -> Column:
    """Weight of ``units`` (>= 1) bought: ``log`` 1 + ln(units), ``linear`` units, ``binary`` 1.0.
    Every scheme gives 1.0 for one unit."""
    if scheme == "log":
        return F.lit(1.0) + F.log(units.cast("double"))
    if scheme == "linear":
        return units.cast("double")
    if scheme == "binary":
        return F.lit(1.0)
    raise ValueError(f"unknown quantity weight {scheme!r}; use log, linear or binary")


def ordered_items(lines: DataFrame, returns: DataFrame | None, scheme: str, order_weight: float,
                  half_life_days: float | None = None, reference: dt.datetime | None = None) -> DataFrame:
    """Customer order lines → interactions (INTERACTION_COLUMNS), one row per (user, sku).

    Input: :func:`order_lines` (guest lines are left out here) and, to subtract, silver.returns
    (user_id, sku, quantity; guest returns ignored) or None. Net units = units bought - units
    returned per (user, sku); pairs with net units <= 0 drop out. ``rating`` = ``order_weight`` x
    :func:`quantity_weight` (net units, ``scheme``) x ``0.5 ** (age_days / half_life_days)`` when a
    half-life is given, age = ``reference`` - the latest order of the sku (``ts``). ``consumed`` = true.
    """
    bought = lines.where(~F.col("guest")).groupBy("user_id", "sku").agg(
        F.sum("quantity").alias("units"), F.max("order_ts").alias("ts"))
    if returns is not None:
        returned = returns.where(~is_missing("user_id")).groupBy("user_id", "sku").agg(
            F.sum("quantity").alias("returned"))
        bought = bought.join(returned, ["user_id", "sku"], "left").withColumn(
            "units", F.col("units") - F.coalesce(F.col("returned"), F.lit(0)))
    rating = (F.lit(float(order_weight)) * quantity_weight(F.col("units"), scheme)
              * _decay(F.col("ts"), half_life_days, reference, "ordered_items"))
    return bought.where(F.col("units") > 0).select(
        "user_id", F.col("sku").alias("item_id"), rating.alias("rating"), "ts", F.lit(True).alias("consumed"),
        F.lit(True).alias("relevant"))


def summed_interactions(interactions: DataFrame) -> DataFrame:
    """Interactions of several sources (INTERACTION_COLUMNS, extra columns ignored; several rows per
    (user, item) allowed) → one row per (user, item): ratings summed, latest ts, consumed (relevant)
    if any is."""
    return interactions.groupBy("user_id", "item_id").agg(
        F.sum("rating").alias("rating"), F.max("ts").alias("ts"), F.max("consumed").alias("consumed"),
        F.max("relevant").alias("relevant")).select(*INTERACTION_COLUMNS)


def rated_items(ratings: DataFrame, mode: str, relevant_min_rating: float,
                feedback_min_rating: float | None = None, feedback_weight: str = "binary") -> DataFrame:
    """Valid ratings (user_id, item_id, rating[, ts]) → interactions (INTERACTION_COLUMNS), one row
    per rated (user, item), whatever the rating: every rated item is consumed (excluded from that
    user's recommendations) and ``relevant`` when its mean rating >= ``relevant_min_rating``.

    ``rating``: explicit mode, the mean rating; implicit mode, the training weight: 1.0 (``binary``)
    or the mean rating (``rating``) when the mean rating >= ``feedback_min_rating`` (None: every
    rating), else 0.0 (no feedback: :func:`training_feedback` leaves the row out of the fit).
    ``ts`` is the latest rating time (null if absent).
    """
    ts = F.col("ts").cast("timestamp") if "ts" in ratings.columns else F.lit(None).cast("timestamp")
    per_pair = ratings.groupBy("user_id", "item_id").agg(F.avg(F.col("rating").cast("double")).alias("mean"),
                                                         F.max(ts).alias("ts"))
    mean = F.col("mean")
    rating = implicit_weight(mean, feedback_min_rating, feedback_weight) if mode == "implicit" else mean
    return per_pair.select("user_id", "item_id", rating.alias("rating"), "ts", F.lit(True).alias("consumed"),
                           (mean >= relevant_min_rating).alias("relevant"))


def implicit_weight(rating: Column, feedback_min_rating: float | None, feedback_weight: str) -> Column:
    """A rating as implicit feedback: 1.0 (``binary``) or the rating (``rating``) when it is >=
    ``feedback_min_rating`` (None: always), else 0.0 (no feedback)."""
    weight = F.lit(1.0) if feedback_weight == "binary" else rating
    is_feedback = F.lit(True) if feedback_min_rating is None else rating >= feedback_min_rating
    return F.when(is_feedback, weight).otherwise(F.lit(0.0))


def training_feedback(interactions: DataFrame, mode: str) -> DataFrame:
    """The interactions ALS and the baselines learn from: implicit mode drops the rows of weight 0
    (ratings below ``feedback_min_rating``, kept for exclusion and evaluation); explicit keeps all."""
    return interactions.where(F.col("rating") > 0) if mode == "implicit" else interactions


def read_udata(spark: SparkSession, path: str) -> DataFrame:
    """MovieLens ``u.data`` / ``ua.base`` (tab-separated user, item, rating, unix seconds) →
    user_id STRING, item_id STRING, rating DOUBLE, ts TIMESTAMP (unparsable values become null and
    are caught by :func:`rating_rules`)."""
    raw = spark.read.csv(path, sep="\t", schema=UDATA_SCHEMA, header=False)
    return raw.select(
        F.trim("user_id").alias("user_id"), F.trim("item_id").alias("item_id"),
        F.col("rating").try_cast("double").alias("rating"),
        F.timestamp_seconds(F.col("unix_ts").try_cast("long")).alias("ts"),
    )


def max_timestamp(frame: DataFrame, column: str = "event_ts") -> dt.datetime | None:
    """Latest ``column`` value (one aggregate row; None without rows), the default reference time of
    the decay."""
    return frame.agg(F.max(column)).first()[0]
