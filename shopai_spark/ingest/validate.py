"""Typed parsing, validation rules and silver shaping for each raw source (pure transforms).

Each ``parse_*`` takes the string frame from :func:`~shopai_spark.ingest.sources.read_source` and
returns typed canonical columns plus ``raw`` (struct of the original strings, read by the rules),
``_corrupt_record``, ``record`` (the raw text) and the row identity (``source_file``,
``file_checksum``, ``row_number``). Each ``*_rules`` lists the :class:`~shopai_spark.quality.Rule`
reasons for that source. The rule set is documented in docs/ingest.md; in short:

* a required value that is missing → ``missing_<column>``; present but unparseable →
  ``unparseable_<column>``; a timestamp before ``ingest.min_ts`` or more than
  ``ingest.max_future_days`` in the future → ``<column>_out_of_range``. A record that cannot be
  split into the header's fields (a wrong field count, a stray quote, a JSON line that is not an object) → ``malformed_record`` only
  (:func:`split_malformed`, before the other rules).
* events: event_type outside {view, add_to_cart, purchase} → ``unknown_event_type``; price < 0 →
  ``negative_price``.
* numbers: NaN and ±Infinity are ``unparseable_<column>`` like any other non-number.
* order lines: quantity 0 → ``zero_quantity``; the **returns rule**: an ``order_id`` starting with
  ``ingest.cancellation_prefix`` is a cancellation and must have a negative quantity (else
  ``cancellation_with_positive_quantity``); a negative quantity on a normal order →
  ``negative_quantity_without_cancellation``. An order none of whose lines has a customer is a guest
  checkout (kept, user_id null); a line without customer in an order whose other lines have one →
  ``missing_user_id``. Lines of one order with two customers → ``conflicting_order_customer``; whose timestamps spread wider than
  ``ingest.order_ts_tolerance_minutes`` → ``order_ts_spread_over_tolerance`` (within it, the order
  takes the earliest time). A line of an order already in silver whose customer or country (the
  fields of ``ingest.immutable_order_fields``) differs from the stored order's →
  ``conflicting_redelivery``, unless ``ingest.allow_updates`` (an explicit correction run).
* duplicates: an exact repeat of an already seen row → ``duplicate_row`` (the first copy is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.ingest.config import IngestConfig
from shopai_spark.ingest.sources import CORRUPT, ORDER_LINE_COLUMNS, ROW_ID_COLUMNS
from shopai_spark.quality import Rule, missing_reason, missing_value
from shopai_spark.schemas import EVENT_TYPES


def _true(condition: Column) -> Column:
    """``condition`` with null read as false (rules flag nulls through their own reason)."""
    return F.coalesce(condition, F.lit(False))


def _clean(column: str) -> Column:
    """Trimmed string, empty → null."""
    trimmed = F.trim(F.col(column))
    return F.when(trimmed != "", trimmed)


def _parse_ts(column: str, timestamp_format: str | None) -> Column:
    """The configured pattern first, then ISO-8601 (Excel cells arrive as ISO text)."""
    value = _clean(column)
    if timestamp_format is None:
        return F.try_to_timestamp(value)
    return F.coalesce(F.try_to_timestamp(value, F.lit(timestamp_format)), F.try_to_timestamp(value))


def _number(column: str, kind: str = "double") -> Column:
    """The value as ``kind``; null when it does not parse or is NaN / ±Infinity."""
    value = _clean(column).try_cast(kind)
    if kind != "double":
        return value
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def _keep_raw(raw: DataFrame, columns: Sequence[str]) -> list[Column]:
    """The raw strings as struct ``raw`` (for rules and quarantine) and the row's identity columns."""
    return [F.struct(*[F.col(c) for c in columns]).alias("raw"), F.col(CORRUPT), F.col("record"),
            *[F.col(c) for c in ROW_ID_COLUMNS]]


def _value_rules(column: str, parsed: Column, kind: str = "") -> list[Rule]:
    """missing_<column> and unparseable_<column> for a required typed column."""
    return [
        Rule(missing_reason(column), _clean(f"raw.{column}").isNull()),
        Rule(f"unparseable_{column}", _true(_clean(f"raw.{column}").isNotNull() & parsed.isNull())),
    ]


def _range_rule(column: str, config: IngestConfig) -> Rule:
    latest = F.current_timestamp() + F.make_interval(days=F.lit(config.max_future_days))
    earliest = F.lit(date.fromisoformat(config.min_ts)).cast("timestamp")
    return Rule(f"{column}_out_of_range", _true((F.col(column) < earliest) | (F.col(column) > latest)))


# ---------------------------------------------------------------------------------------------
# events


def parse_events(raw: DataFrame, timestamp_format: str | None) -> DataFrame:
    """Raw event strings → user_id, session_id, sku, event_type (lower-cased), event_ts, price + raw."""
    columns = ("user_id", "session_id", "sku", "event_type", "event_ts", "price")
    return raw.select(
        _clean("user_id").alias("user_id"),
        _clean("session_id").alias("session_id"),
        _clean("sku").alias("sku"),
        F.lower(_clean("event_type")).alias("event_type"),
        _parse_ts("event_ts", timestamp_format).alias("event_ts"),
        _number("price").alias("price"),
        *_keep_raw(raw, columns),
    )


def event_rules(config: IngestConfig) -> list[Rule]:
    return [
        missing_value("user_id"),
        missing_value("session_id"),
        missing_value("sku"),
        missing_value("event_type"),
        Rule("unknown_event_type", _true(~F.col("event_type").isin(*EVENT_TYPES))),
        *_value_rules("event_ts", F.col("event_ts")),
        _range_rule("event_ts", config),
        Rule("unparseable_price", _true(_clean("raw.price").isNotNull() & F.col("price").isNull())),
        Rule("negative_price", _true(F.col("price") < 0)),
    ]


def silver_events(valid: DataFrame) -> DataFrame:
    """Valid parsed events → silver.events columns."""
    return valid.select("user_id", "session_id", "sku", "event_type", "event_ts", "price")


# ---------------------------------------------------------------------------------------------
# order lines → orders, order_items, returns


def parse_order_lines(raw: DataFrame, timestamp_format: str | None, cancellation_prefix: str) -> DataFrame:
    """Raw invoice lines → order_id, sku, description, quantity, order_ts, unit_price, user_id,
    country, is_cancellation + raw."""
    columns = ("order_id", "sku", "description", "quantity", "order_ts", "unit_price", "user_id", "country")
    order_id = _clean("order_id")
    return raw.select(
        order_id.alias("order_id"),
        _clean("sku").alias("sku"),
        _clean("description").alias("description"),
        _number("quantity", "int").alias("quantity"),
        _parse_ts("order_ts", timestamp_format).alias("order_ts"),
        _number("unit_price").alias("unit_price"),
        _clean("user_id").alias("user_id"),
        _clean("country").alias("country"),
        _true(order_id.startswith(cancellation_prefix)).alias("is_cancellation") if cancellation_prefix
        else F.lit(False).alias("is_cancellation"),
        *_keep_raw(raw, columns),
    )


def order_line_rules(config: IngestConfig) -> list[Rule]:
    quantity = F.col("quantity")
    return [
        missing_value("order_id"),
        missing_value("sku"),
        *_value_rules("order_ts", F.col("order_ts")),
        _range_rule("order_ts", config),
        *_value_rules("quantity", quantity),
        Rule("zero_quantity", _true(quantity == 0)),
        Rule("negative_quantity_without_cancellation", _true((quantity < 0) & ~F.col("is_cancellation"))),
        Rule("cancellation_with_positive_quantity", _true((quantity > 0) & F.col("is_cancellation"))),
        *_value_rules("unit_price", F.col("unit_price")),
        Rule("negative_unit_price", _true(F.col("unit_price") < 0)),
    ]


ORDER_LINE_KEYS = ORDER_LINE_COLUMNS  # an order line repeated with every value equal is a duplicate
def order_header_rules(lines: DataFrame, tolerance_minutes: float) -> tuple[DataFrame, list[Rule]]:
    """Add per-order ``_customers`` (distinct non-null customers) and ``_spread_seconds`` (latest −
    earliest line time) to every line, with the rules that read them: ``conflicting_order_customer``
    (two customers), ``missing_user_id`` (a line without customer in an order whose other lines
    have one; an order without any customer is a guest checkout) and ``order_ts_spread_over_tolerance``."""
    w = Window.partitionBy("order_id")
    checked = lines.withColumn("_customers", F.size(F.collect_set("user_id").over(w))).withColumn(
        "_spread_seconds", F.max("order_ts").over(w).cast("long") - F.min("order_ts").over(w).cast("long"))
    return checked, [
        Rule("conflicting_order_customer", F.col("_customers") > 1),
        Rule(missing_reason("user_id"), F.col("user_id").isNull() & (F.col("_customers") == 1)),
        Rule("order_ts_spread_over_tolerance", F.col("_spread_seconds") > F.lit(tolerance_minutes * 60.0)),
    ]


def redelivery_rules(lines: DataFrame, stored_orders: DataFrame | None,
                     fields: Sequence[str]) -> tuple[DataFrame, list[Rule]]:
    """Order lines + ``_stored`` (their order_id is in ``stored_orders``, silver.orders),
    ``_stored_<field>`` and ``_delivered_<field>`` per immutable header field (the order's value in
    this delivery, as :func:`silver_orders` takes it: the largest non-null), with the rule
    ``conflicting_redelivery``: a line whose stored order has another value (null-safe) of one of
    ``fields``. No stored orders or no fields: the lines unchanged and no rule."""
    if stored_orders is None or not fields:
        return lines, []
    stored = stored_orders.select("order_id", F.lit(True).alias("_stored"),
                                  *[F.col(f).alias(f"_stored_{f}") for f in fields])
    order = Window.partitionBy("order_id")
    delivered = lines.select("*", *[F.max(f).over(order).alias(f"_delivered_{f}") for f in fields])
    differs = F.lit(False)
    for f in fields:
        differs = differs | ~F.col(f"_delivered_{f}").eqNullSafe(F.col(f"_stored_{f}"))
    conflict = F.coalesce(F.col("_stored"), F.lit(False)) & differs
    return delivered.join(stored, "order_id", "left"), [Rule("conflicting_redelivery", conflict)]


def silver_orders(sales_lines: DataFrame) -> DataFrame:
    """Valid non-cancellation lines → silver.orders: order_id, user_id (null: guest), order_ts (the
    earliest line's), country."""
    return sales_lines.groupBy("order_id").agg(
        F.first("user_id").alias("user_id"), F.min("order_ts").alias("order_ts"), F.max("country").alias("country"))


def silver_order_items(sales_lines: DataFrame) -> DataFrame:
    """Valid non-cancellation lines → silver.order_items: order_id, sku, quantity, unit_price,
    source_lines.

    Several lines of the same SKU in one order are one item: quantities summed, unit_price the
    quantity-weighted mean, source_lines the number of lines merged.
    """
    return sales_lines.groupBy("order_id", "sku").agg(
        F.sum("quantity").cast("int").alias("quantity"),
        (F.sum(F.col("quantity") * F.col("unit_price")) / F.sum("quantity")).alias("unit_price"),
        F.count(F.lit(1)).cast("int").alias("source_lines"),
    )


def silver_returns(cancellation_lines: DataFrame, cancellation_prefix: str) -> DataFrame:
    """Valid cancellation lines → silver.returns: return_id, original_order_id, user_id, sku,
    quantity (positive), unit_price, return_ts, source_lines."""
    return cancellation_lines.groupBy("order_id", "sku").agg(
        F.first("user_id").alias("user_id"),
        (-F.sum("quantity")).cast("int").alias("quantity"),
        (F.sum(F.col("quantity") * F.col("unit_price")) / F.sum("quantity")).alias("unit_price"),
        F.min("order_ts").alias("return_ts"),
        F.count(F.lit(1)).cast("int").alias("source_lines"),
    ).select(
        F.col("order_id").alias("return_id"),
        F.expr(f"substring(order_id, {len(cancellation_prefix) + 1})").alias("original_order_id"),
        "user_id", "sku", "quantity", "unit_price", "return_ts", "source_lines",
    )


# ---------------------------------------------------------------------------------------------
# products


def parse_products(raw: DataFrame) -> DataFrame:
    """Raw product strings → sku, title, category, brand, list_price + raw."""
    columns = ("sku", "title", "category", "brand", "list_price")
    return raw.select(
        _clean("sku").alias("sku"), _clean("title").alias("title"), _clean("category").alias("category"),
        _clean("brand").alias("brand"), _number("list_price").alias("list_price"),
        *_keep_raw(raw, columns),
    )


def product_rules() -> list[Rule]:
    return [
        missing_value("sku"),
        Rule("unparseable_list_price", _true(_clean("raw.list_price").isNotNull() & F.col("list_price").isNull())),
        Rule("negative_list_price", _true(F.col("list_price") < 0)),
    ]


def silver_products(valid: DataFrame) -> DataFrame:
    """Valid product rows → silver.products: sku, title, category, brand, list_price."""
    return valid.select("sku", "title", "category", "brand", "list_price")


def products_from_order_lines(sales_lines: DataFrame) -> DataFrame:
    """Valid non-cancellation order lines → silver.products rows for a shop without a product
    export: sku, title (the description written most often, ties to the smallest), category, brand
    and list_price null."""
    counted = sales_lines.where(F.col("description").isNotNull()).groupBy("sku", "description").count()
    titles = (counted.withColumn("_rank", F.row_number().over(
        Window.partitionBy("sku").orderBy(F.desc("count"), "description"))).where("_rank = 1")
        .select("sku", F.col("description").alias("title")))
    return (sales_lines.select("sku").distinct().join(titles, "sku", "left").select(
        "sku", "title", F.lit(None).cast("string").alias("category"), F.lit(None).cast("string").alias("brand"),
        F.lit(None).cast("double").alias("list_price")))


# ---------------------------------------------------------------------------------------------
# malformed records and duplicates


def split_malformed(parsed: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(records split into the header's fields, the others with reason ``malformed_record``)."""
    malformed = parsed.where(F.col(CORRUPT).isNotNull()).withColumn("reason", F.lit("malformed_record"))
    return parsed.where(F.col(CORRUPT).isNull()), malformed


def split_duplicates(valid: DataFrame, keys: Sequence[str], reason: str = "duplicate_row") -> tuple[DataFrame, DataFrame]:
    """Keep the first row per ``keys`` (ordered by source file and row number, so deterministic);
    return (kept rows, later copies with ``reason``)."""
    w = Window.partitionBy(*keys).orderBy("source_file", "row_number")
    ranked = valid.withColumn("_copy", F.row_number().over(w))
    kept = ranked.filter("_copy = 1").drop("_copy")
    copies = ranked.filter("_copy > 1").drop("_copy").withColumn("reason", F.lit(reason))
    return kept, copies
