"""Ingest job: raw exports → validated silver Delta tables; every rejected row → quarantine.

Steps: read each source with its explicit schema and column mapping, parse types, apply the rules
of :mod:`shopai_spark.ingest.validate`, split off duplicates, shape the silver tables; only when
all sources are validated are the tables written, by MERGE on their keys (re-ingesting the same
files inserts nothing). If a write fails half way, the silver tables already merged in this run are
restored to the version they had before it, so a failed run leaves silver as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.ingest import validate
from shopai_spark.ingest.sources import (
    CORRUPT,
    EVENT_COLUMNS,
    ORDER_LINE_COLUMNS,
    PRODUCT_COLUMNS,
    read_source,
)
from shopai_spark.quality import count_by_reason, split_valid, to_quarantine_rows, write_quarantine
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS, SilverTable

log = logging.getLogger(__name__)


class EmptyInputError(RuntimeError):
    """A source had no rows at all: nothing is written."""


@dataclass
class ValidatedSource:
    """One raw source after validation: silver frames to merge and the rejected rows."""

    name: str
    rows_read: int
    silver: dict[SilverTable, DataFrame]
    rejected: DataFrame  # raw string columns + _corrupt_record + source_file + reason


def _rejected_raw(rejected: DataFrame) -> DataFrame:
    """Rejected parsed rows → the raw strings they came from, plus reason and source_file."""
    return rejected.select("raw.*", CORRUPT, "source_file", "reason")


def _read_parsed(ctx: JobContext, name: str, source, columns, parse) -> tuple[DataFrame, int]:
    parsed = parse(read_source(ctx.spark, source, columns)).persist(StorageLevel.MEMORY_AND_DISK)
    rows = parsed.count()
    if rows == 0:
        raise EmptyInputError(f"ingest: no rows found in {name} source {source.path}; nothing was written")
    return parsed, rows


def validate_events(ctx: JobContext) -> ValidatedSource:
    config = ctx.config.ingest
    parsed, rows = _read_parsed(ctx, "events", config.events, EVENT_COLUMNS,
                                lambda raw: validate.parse_events(raw, config.events.timestamp_format))
    valid, rejected = split_valid(parsed, validate.event_rules(config))
    kept, duplicates = validate.split_duplicates(valid, EVENTS.keys, reason="duplicate_key")
    return ValidatedSource("events", rows, {EVENTS: validate.silver_events(kept)},
                           _rejected_raw(rejected).unionByName(_rejected_raw(duplicates)))


def validate_orders(ctx: JobContext) -> ValidatedSource:
    config = ctx.config.ingest
    prefix = config.cancellation_prefix
    parsed, rows = _read_parsed(
        ctx, "orders", config.orders, ORDER_LINE_COLUMNS,
        lambda raw: validate.parse_order_lines(raw, config.orders.timestamp_format, prefix))
    valid, rejected = split_valid(parsed, validate.order_line_rules(config))
    unique, duplicates = validate.split_duplicates(valid, ORDER_LINE_COLUMNS)
    checked = validate.inconsistent_order_headers(unique)
    consistent = checked.filter(~F.col("inconsistent_header")).drop("inconsistent_header")
    inconsistent = (checked.filter(F.col("inconsistent_header")).drop("inconsistent_header")
                    .withColumn("reason", F.lit("inconsistent_order_header")))
    sales = consistent.filter(~F.col("is_cancellation"))
    cancellations = consistent.filter(F.col("is_cancellation"))
    silver = {
        ORDERS: validate.silver_orders(sales),
        ORDER_ITEMS: validate.silver_order_items(sales),
        RETURNS: validate.silver_returns(cancellations, prefix),
    }
    rejected_all = _rejected_raw(rejected).unionByName(_rejected_raw(duplicates)).unionByName(
        _rejected_raw(inconsistent))
    return ValidatedSource("orders", rows, silver, rejected_all)


def validate_products(ctx: JobContext) -> ValidatedSource:
    parsed, rows = _read_parsed(ctx, "products", ctx.config.ingest.products, PRODUCT_COLUMNS,
                                validate.parse_products)
    valid, rejected = split_valid(parsed, validate.product_rules())
    kept, duplicates = validate.split_duplicates(valid, PRODUCTS.keys, reason="duplicate_key")
    return ValidatedSource("products", rows, {PRODUCTS: validate.silver_products(kept)},
                           _rejected_raw(rejected).unionByName(_rejected_raw(duplicates)))


def merge_silver(ctx: JobContext, tables: dict[SilverTable, DataFrame]) -> dict[str, dict[str, int]]:
    """MERGE every silver frame into its table; on failure restore the tables already merged."""
    lakehouse = ctx.lakehouse
    for table in tables:
        lakehouse.ensure(table.ref, table.ddl, table.constraints)
    before = {table: lakehouse.version(table.ref) for table in tables}
    merged: list[SilverTable] = []
    metrics = {}
    try:
        for table, frame in tables.items():
            with ctx.step(f"merge {table.ref}") as step:
                result = lakehouse.merge(frame, table.ref, keys=table.keys)
                step.update(inserted=result.get("numTargetRowsInserted", 0),
                            updated=result.get("numTargetRowsUpdated", 0))
            merged.append(table)
            metrics[str(table.ref)] = result
    except Exception:
        for table in merged:
            log.error("restoring %s to version %s after a failed ingest", table.ref, before[table])
            lakehouse.restore(table.ref, before[table])
        raise
    return metrics


def run(ctx: JobContext) -> JobSummary:
    """Validate events, orders and products, quarantine rejects, merge silver; return counts."""
    sources = []
    for validate_source in (validate_events, validate_orders, validate_products):
        with ctx.step(f"read + validate {validate_source.__name__.removeprefix('validate_')}") as step:
            source = validate_source(ctx)
            source.rejected = source.rejected.persist(StorageLevel.MEMORY_AND_DISK)
            reasons = count_by_reason(source.rejected)
            step.update(read=source.rows_read, rejected=sum(reasons.values()))
        sources.append((source, reasons))

    with ctx.step("write quarantine") as step:
        rows = None
        for source, _ in sources:
            part = to_quarantine_rows(source.rejected, f"raw.{source.name}", ctx.job, ctx.run.run_id,
                                      record_columns=[c for c in source.rejected.columns
                                                      if c not in ("reason", "source_file")])
            rows = part if rows is None else rows.unionByName(part)
        step.update(inserted=write_quarantine(ctx.lakehouse, rows).get("numTargetRowsInserted", 0))

    silver = {table: frame for source, _ in sources for table, frame in source.silver.items()}
    merge_metrics = merge_silver(ctx, silver)

    metrics: dict[str, float] = {}
    for source, reasons in sources:
        metrics[f"{source.name}.rows_read"] = source.rows_read
        for reason, count in sorted(reasons.items()):
            metrics[f"{source.name}.quarantined.{reason}"] = count
    for table, result in merge_metrics.items():
        metrics[f"{table}.inserted"] = result.get("numTargetRowsInserted", 0)
        metrics[f"{table}.updated"] = result.get("numTargetRowsUpdated", 0)
    ctx.run.log_metrics(metrics)
    ctx.run.set_tags({"ingest.sources": ",".join(s.name for s, _ in sources)})

    summary = JobSummary(job=ctx.job, run_id=ctx.run.run_id)
    for table in silver:
        summary.tables[str(table.ref)] = ctx.lakehouse.read(table.ref).count()
    for source, reasons in sources:
        detail = ", ".join(f"{r}={n:,}" for r, n in sorted(reasons.items())) or "none"
        summary.lines.append(f"  {source.name}: read {source.rows_read:,}; quarantined: {detail}")
        source.rejected.unpersist()
    return summary
