"""Typed parsing, validation rules and silver shaping for each raw source (pure transforms).

Each ``parse_*`` takes the string frame from :func:`~shopai_spark.ingest.sources.read_source` and
returns typed canonical columns plus ``raw`` (struct of the original strings, kept for quarantine),
``_corrupt_record`` and ``source_file``. Each ``*_rules`` lists the :class:`~shopai_spark.quality.Rule`
reasons for that source. The rule set is documented in docs/ingest.md; in short:

* a required value that is missing → ``missing_<column>``; present but unparseable →
  ``unparseable_<column>``; a timestamp before ``ingest.min_ts`` or more than
  ``ingest.max_future_days`` in the future → ``<column>_out_of_range``; a JSON line that is not
  JSON → ``malformed_record``.
* events: event_type outside {view, add_to_cart, purchase} → ``unknown_event_type``; price < 0 →
  ``negative_price``.
* order lines: quantity 0 → ``zero_quantity``; the **returns rule**: an ``order_id`` starting with
  ``ingest.cancellation_prefix`` is a cancellation and must have a negative quantity (else
  ``cancellation_with_positive_quantity``); a negative quantity on a normal order →
  ``negative_quantity_without_cancellation``; lines of one order that disagree on customer or
  timestamp → ``inconsistent_order_header``.
* duplicates: an exact repeat of an already seen row → ``duplicate_row`` (the first copy is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.config import IngestConfig
from shopai_spark.ingest.sources import CORRUPT
from shopai_spark.quality import Rule
from shopai_spark.schemas import EVENT_TYPES


def _true(condition: Column) -> Column:
    """``condition`` with null read as false (rules flag nulls through their own reason)."""
    return F.coalesce(condition, F.lit(False))


def _clean(column: str) -> Column:
    """Trimmed string, empty → null."""
    trimmed = F.trim(F.col(column))
    return F.when(trimmed != "", trimmed)


def _parse_ts(column: str, timestamp_format: str | None) -> Column:
    value = _clean(column)
    if timestamp_format is None:
        return F.try_to_timestamp(value)
    return F.try_to_timestamp(value, F.lit(timestamp_format))


def _keep_raw(raw: DataFrame, columns: Sequence[str]) -> Column:
    return F.struct(*[F.col(c) for c in columns]).alias("raw")


def _value_rules(column: str, parsed: Column, kind: str = "") -> list[Rule]:
    """missing_<column> and unparseable_<column> for a required typed column."""
    return [
        Rule(f"missing_{column}", _clean(f"raw.{column}").isNull()),
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
        _clean("price").try_cast("double").alias("price"),
        _keep_raw(raw, columns), CORRUPT, "source_file",
    )


def event_rules(config: IngestConfig) -> list[Rule]:
    return [
        Rule("malformed_record", F.col(CORRUPT).isNotNull()),
        Rule("missing_user_id", F.col("user_id").isNull()),
        Rule("missing_session_id", F.col("session_id").isNull()),
        Rule("missing_sku", F.col("sku").isNull()),
        Rule("missing_event_type", F.col("event_type").isNull()),
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
        _clean("quantity").try_cast("int").alias("quantity"),
        _parse_ts("order_ts", timestamp_format).alias("order_ts"),
        _clean("unit_price").try_cast("double").alias("unit_price"),
        _clean("user_id").alias("user_id"),
        _clean("country").alias("country"),
        _true(order_id.startswith(cancellation_prefix)).alias("is_cancellation") if cancellation_prefix
        else F.lit(False).alias("is_cancellation"),
        _keep_raw(raw, columns), CORRUPT, "source_file",
    )


def order_line_rules(config: IngestConfig) -> list[Rule]:
    quantity = F.col("quantity")
    return [
        Rule("malformed_record", F.col(CORRUPT).isNotNull()),
        Rule("missing_order_id", F.col("order_id").isNull()),
        Rule("missing_sku", F.col("sku").isNull()),
        Rule("missing_user_id", F.col("user_id").isNull()),
        *_value_rules("order_ts", F.col("order_ts")),
        _range_rule("order_ts", config),
        *_value_rules("quantity", quantity),
        Rule("zero_quantity", _true(quantity == 0)),
        Rule("negative_quantity_without_cancellation", _true((quantity < 0) & ~F.col("is_cancellation"))),
        Rule("cancellation_with_positive_quantity", _true((quantity > 0) & F.col("is_cancellation"))),
        *_value_rules("unit_price", F.col("unit_price")),
        Rule("negative_unit_price", _true(F.col("unit_price") < 0)),
    ]


def inconsistent_order_headers(lines: DataFrame) -> DataFrame:
    """Add ``inconsistent_header``: true for every line of an order whose lines disagree on
    user_id or order_ts."""
    w = Window.partitionBy("order_id")
    return lines.withColumn(
        "inconsistent_header",
        (F.min("user_id").over(w) != F.max("user_id").over(w)) | (F.min("order_ts").over(w) != F.max("order_ts").over(w)),
    )


def silver_orders(sales_lines: DataFrame) -> DataFrame:
    """Valid non-cancellation lines → silver.orders: order_id, user_id, order_ts, country."""
    return sales_lines.groupBy("order_id").agg(
        F.first("user_id").alias("user_id"), F.min("order_ts").alias("order_ts"), F.max("country").alias("country"))


def silver_order_items(sales_lines: DataFrame) -> DataFrame:
    """Valid non-cancellation lines → silver.order_items: order_id, sku, quantity, unit_price.

    Several lines of the same SKU in one order are one item: quantities summed, unit_price the
    quantity-weighted mean.
    """
    return sales_lines.groupBy("order_id", "sku").agg(
        F.sum("quantity").cast("int").alias("quantity"),
        (F.sum(F.col("quantity") * F.col("unit_price")) / F.sum("quantity")).alias("unit_price"),
    )


def silver_returns(cancellation_lines: DataFrame, cancellation_prefix: str) -> DataFrame:
    """Valid cancellation lines → silver.returns: return_id, original_order_id, user_id, sku,
    quantity (positive), unit_price, return_ts."""
    return cancellation_lines.groupBy("order_id", "sku").agg(
        F.first("user_id").alias("user_id"),
        (-F.sum("quantity")).cast("int").alias("quantity"),
        (F.sum(F.col("quantity") * F.col("unit_price")) / F.sum("quantity")).alias("unit_price"),
        F.min("order_ts").alias("return_ts"),
    ).select(
        F.col("order_id").alias("return_id"),
        F.expr(f"substring(order_id, {len(cancellation_prefix) + 1})").alias("original_order_id"),
        "user_id", "sku", "quantity", "unit_price", "return_ts",
    )


# ---------------------------------------------------------------------------------------------
# products


def parse_products(raw: DataFrame) -> DataFrame:
    """Raw product strings → sku, title, category, brand, list_price + raw."""
    columns = ("sku", "title", "category", "brand", "list_price")
    return raw.select(
        _clean("sku").alias("sku"), _clean("title").alias("title"), _clean("category").alias("category"),
        _clean("brand").alias("brand"), _clean("list_price").try_cast("double").alias("list_price"),
        _keep_raw(raw, columns), CORRUPT, "source_file",
    )


def product_rules() -> list[Rule]:
    return [
        Rule("malformed_record", F.col(CORRUPT).isNotNull()),
        Rule("missing_sku", F.col("sku").isNull()),
        Rule("unparseable_list_price", _true(_clean("raw.list_price").isNotNull() & F.col("list_price").isNull())),
        Rule("negative_list_price", _true(F.col("list_price") < 0)),
    ]


def silver_products(valid: DataFrame) -> DataFrame:
    return valid.select("sku", "title", "category", "brand", "list_price")


# ---------------------------------------------------------------------------------------------
# duplicates


def split_duplicates(valid: DataFrame, keys: Sequence[str], reason: str = "duplicate_row") -> tuple[DataFrame, DataFrame]:
    """Keep the first row per ``keys`` (ordered by source_file and raw values, so deterministic);
    return (kept rows, later copies with ``reason``)."""
    w = Window.partitionBy(*keys).orderBy("source_file", F.to_json("raw"))
    ranked = valid.withColumn("_copy", F.row_number().over(w))
    kept = ranked.filter("_copy = 1").drop("_copy")
    copies = ranked.filter("_copy > 1").drop("_copy").withColumn("reason", F.lit(reason))
    return kept, copies
