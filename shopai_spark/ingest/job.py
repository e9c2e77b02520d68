"""Ingest job: raw exports → validated silver Delta tables; every rejected row → quarantine.

Steps: read each configured source (events, orders, products; a source set to null is skipped) with
its column mapping (:mod:`~shopai_spark.ingest.sources`), parse types and apply the rules of
:mod:`~shopai_spark.ingest.validate`, split off duplicates, shape the silver tables (products are
derived from the order lines when there is no product source); only when every source is validated
are the tables written, quarantine first, then silver by MERGE on their keys (re-ingesting the same
files inserts nothing). The tables change as one unit: a run that fails or is killed half way is
undone by the run ledger (:mod:`shopai_spark.runs`; OUTPUTS, APPENDS).

Every raw row read ends in exactly one place: a silver row (``silver.order_items`` and
``silver.returns`` count the raw lines they merge in ``source_lines``) or a quarantine row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.ingest import validate
from shopai_spark.ingest.config import IngestConfig, SourceConfig
from shopai_spark.ingest.sources import ROW_ID_COLUMNS, RawSource, read_source
from shopai_spark.pseudonyms import key_from_environment, pseudonym
from shopai_spark.quality import (
    QUARANTINE,
    count_by_reasons,
    raw_quarantine_rows,
    split_reasons,
    split_valid,
    write_quarantine,
)
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS, SilverTable

log = logging.getLogger(__name__)

REJECTED_COLUMNS = (*ROW_ID_COLUMNS, "record", "reason")
OUTPUTS = tuple(table.ref for table in (EVENTS, ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS))
APPENDS = (QUARANTINE,)


@dataclass
class ValidatedSource:
    """One raw source after validation: silver frames to merge and the rejected raw rows
    (REJECTED_COLUMNS)."""

    name: str
    rows_read: int
    silver: dict[SilverTable, DataFrame]
    rejected: DataFrame
    raw: RawSource
    notes: tuple[str, ...] = ()
    insert_only: set[SilverTable] = field(default_factory=set)
    rows_rejected: int = 0


def _rejected(*frames: DataFrame) -> DataFrame:
    out = frames[0].select(*REJECTED_COLUMNS)
    for frame in frames[1:]:
        out = out.unionByName(frame.select(*REJECTED_COLUMNS))
    return out


def pseudonymized(parsed: DataFrame, config: IngestConfig) -> DataFrame:
    """Parsed rows (user_id, record, ...) with user_id replaced by its keyed pseudonym and the raw
    record's copy of it masked the same way, when ``pseudonymize_key_env`` is set; else unchanged."""
    if config.pseudonymize_key_env is None:
        return parsed
    alias = pseudonym(F.col("user_id"), key_from_environment(config.pseudonymize_key_env))
    known = F.col("user_id").isNotNull() & (F.length("user_id") > 0)
    return parsed.withColumn("record", F.when(known, F.replace("record", "user_id", alias)).otherwise(F.col("record"))) \
        .withColumn("user_id", alias)


def validate_events(config: IngestConfig, raw: RawSource) -> ValidatedSource:
    parsed = pseudonymized(validate.parse_events(raw.records, config.events.timestamp_format), config)
    readable, malformed = validate.split_malformed(parsed)
    valid, rejected = split_valid(readable, validate.event_rules(config))
    kept, duplicates = validate.split_duplicates(valid, EVENTS.keys, reason="duplicate_key")
    return ValidatedSource("events", raw.rows, {EVENTS: validate.silver_events(kept)},
                           _rejected(malformed, rejected, duplicates), raw, raw.notes)


def validate_orders(config: IngestConfig, raw: RawSource, stored_orders: DataFrame | None = None) -> ValidatedSource:
    """``stored_orders``: silver.orders as stored (None: no table yet), for ``conflicting_redelivery``."""
    prefix = config.cancellation_prefix
    parsed = pseudonymized(validate.parse_order_lines(raw.records, config.orders.timestamp_format, prefix), config)
    readable, malformed = validate.split_malformed(parsed)
    valid, rejected = split_valid(readable, validate.order_line_rules(config))
    unique, duplicates = validate.split_duplicates(valid, validate.ORDER_LINE_KEYS)
    checked, header_rules = validate.order_header_rules(unique, config.order_ts_tolerance_minutes)
    immutable = [] if config.allow_updates else config.immutable_order_fields
    checked, redelivery = validate.redelivery_rules(checked, stored_orders, immutable)
    consistent, inconsistent = split_valid(checked, [*header_rules, *redelivery])
    sales = consistent.filter(~F.col("is_cancellation"))
    cancellations = consistent.filter(F.col("is_cancellation"))
    silver = {
        ORDERS: validate.silver_orders(sales),
        ORDER_ITEMS: validate.silver_order_items(sales),
        RETURNS: validate.silver_returns(cancellations, prefix),
    }
    notes, insert_only = raw.notes, set()
    if config.products is None:
        silver[PRODUCTS] = validate.products_from_order_lines(sales)
        insert_only.add(PRODUCTS)
        notes += ("products: no product source; silver.products gets the SKUs of the order lines "
                  "(title = their most frequent description), existing products are kept",)
    return ValidatedSource("orders", raw.rows, silver, _rejected(malformed, rejected, duplicates,
                                                                             inconsistent), raw, notes, insert_only)


def validate_products(config: IngestConfig, raw: RawSource) -> ValidatedSource:
    parsed = validate.parse_products(raw.records)
    readable, malformed = validate.split_malformed(parsed)
    valid, rejected = split_valid(readable, validate.product_rules())
    kept, duplicates = validate.split_duplicates(valid, PRODUCTS.keys, reason="duplicate_key")
    return ValidatedSource("products", raw.rows, {PRODUCTS: validate.silver_products(kept)},
                           _rejected(malformed, rejected, duplicates), raw, raw.notes)


VALIDATORS = {"events": validate_events, "orders": validate_orders, "products": validate_products}


def configured_sources(config: IngestConfig) -> dict[str, SourceConfig | None]:
    """Source name → its config (None: left out), in reading order."""
    return {"events": config.events, "orders": config.orders, "products": config.products}


def read_and_validate(ctx: JobContext) -> list[tuple[ValidatedSource, dict[str, int]]]:
    """Read and validate every configured source; nothing is written. Returns each source with its
    rejected-row counts by reason (the rejected frames are persisted)."""
    sources = []
    for name, source in configured_sources(ctx.config).items():
        if source is None:
            log.info("ingest | %s: not configured (ingest.%s: null), skipped", name, name)
            continue
        with ctx.step(f"read + validate {name}") as step:
            raw = read_source(ctx.spark, name, source)
            if name == "orders" and ctx.lakehouse.exists(ORDERS.ref):
                validated = validate_orders(ctx.config, raw, ctx.lakehouse.read(ORDERS.ref))
            else:
                validated = VALIDATORS[name](ctx.config, raw)
            validated.rejected = validated.rejected.persist(StorageLevel.MEMORY_AND_DISK)
            combined = count_by_reasons(validated.rejected)
            validated.rows_rejected = sum(combined.values())
            reasons = split_reasons(combined)
            step.update(files=raw.files, read=validated.rows_read, rejected=sum(reasons.values()))
        sources.append((validated, reasons))
    return sources


def write_rejected(ctx: JobContext, sources: list[ValidatedSource]) -> int:
    """Insert every source's rejected rows into the quarantine table (nothing is written when no
    source rejected a row); returns rows inserted."""
    with ctx.step("write quarantine") as step:
        rows = [raw_quarantine_rows(source.rejected, f"raw.{source.name}", ctx.job, ctx.run.run_id)
                for source in sources if source.rows_rejected]
        inserted = write_quarantine(ctx.lakehouse, rows).get("numTargetRowsInserted", 0)
        step.update(inserted=inserted)
    return inserted


def merge_silver(ctx: JobContext, sources: list[ValidatedSource]) -> dict[str, dict[str, int]]:
    """MERGE every silver frame into its table; returns Delta's operation metrics per table."""
    lakehouse = ctx.lakehouse
    tables = [(table, frame, table in source.insert_only) for source in sources
              for table, frame in source.silver.items()]
    for table, _, _ in tables:
        lakehouse.ensure(table.ref, table.ddl, table.constraints)
    metrics = {}
    for table, frame, insert_only in tables:
        with ctx.step(f"merge {table.ref}") as step:
            result = lakehouse.merge(frame, table.ref, keys=table.keys, update=not insert_only)
            step.update(inserted=result.get("numTargetRowsInserted", 0),
                        updated=result.get("numTargetRowsUpdated", 0))
        metrics[str(table.ref)] = result
    return metrics


def ingest_metrics(sources: list[tuple[ValidatedSource, dict[str, int]]],
                   merged: dict[str, dict[str, int]]) -> dict[str, float]:
    """MLflow metrics: rows read and rows quarantined per reason (a row failing two rules counts
    under both) per source, rows inserted/updated per table."""
    metrics: dict[str, float] = {}
    for source, reasons in sources:
        metrics[f"{source.name}.rows_read"] = source.rows_read
        for reason, count in sorted(reasons.items()):
            metrics[f"{source.name}.quarantined.{reason}"] = count
    for table, result in merged.items():
        metrics[f"{table}.inserted"] = result.get("numTargetRowsInserted", 0)
        metrics[f"{table}.updated"] = result.get("numTargetRowsUpdated", 0)
    return metrics


def run(ctx: JobContext) -> JobSummary:
    """Validate the configured sources, quarantine rejects, merge silver; return counts."""
    sources = read_and_validate(ctx)
    validated = [source for source, _ in sources]
    write_rejected(ctx, validated)
    merged = merge_silver(ctx, validated)
    rejected_rows = {source.name: source.rows_rejected for source in validated}

    metrics = ingest_metrics(sources, merged)
    metrics.update({f"{name}.rows_quarantined": rows for name, rows in rejected_rows.items()})
    ctx.run.log_metrics(metrics)
    skipped = [name for name, source in configured_sources(ctx.config).items() if source is None]
    ctx.run.set_tags({"ingest.sources": ",".join(source.name for source in validated),
                      "ingest.skipped_sources": ",".join(skipped)})

    summary = JobSummary(job=ctx.job, run_id=ctx.run.run_id)
    for table in {table: None for source in validated for table in source.silver}:
        summary.tables[str(table.ref)] = ctx.lakehouse.read(table.ref).count()
    for source, reasons in sources:
        detail = ", ".join(f"{r}={n:,}" for r, n in sorted(reasons.items())) or "none"
        summary.lines.append(f"  {source.name}: read {source.rows_read:,} rows; "
                             f"quarantined {rejected_rows[source.name]:,} ({detail})")
        summary.lines += [f"  {source.name}: {note}" for note in source.notes]
        source.rejected.unpersist()
        source.raw.records.unpersist()
    summary.lines += [f"  {name}: not configured, skipped" for name in skipped]
    return summary
