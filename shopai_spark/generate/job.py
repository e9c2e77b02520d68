"""Generate job: the synthetic shop's raw files and its planted ground truth.

Steps: plan customers and the catalog, count the sales order lines (to size the browsing so that
events ≈ users * events_per_user), write ``<raw_dir>/products/`` (CSV), ``<raw_dir>/orders/``
(CSV, Online-Retail layout) and ``<raw_dir>/events/`` (JSON lines) in overwrite mode with
``files_per_table`` files each and ``dirt_share`` of dirt, then overwrite the bronze truth tables.
Rows and dirty rows per kind are counted while the files are written (one pass) and logged as MLflow
metrics ``rows.raw.<table>`` and ``dirt.<kind>`` (summed over the raw tables).
"""

from __future__ import annotations

import logging
from collections import Counter

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from shopai_spark.generate import shop
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import TRUTH_BUNDLES, TRUTH_PROMOTIONS, TRUTH_SEGMENTS, TRUTH_SKU_DEMAND
from shopai_spark.tables import TableRef

log = logging.getLogger(__name__)

OUTPUTS = (TRUTH_SEGMENTS, TRUTH_BUNDLES, TRUTH_SKU_DEMAND, TRUTH_PROMOTIONS)

RAW_FORMATS = {"products": "csv", "orders": "csv", "events": "json"}


def write_raw(frame: DataFrame, path: str, file_format: str, files: int, kinds: tuple[str, ...]) -> dict[str, int]:
    """Write ``frame`` (raw columns + ``dirt_kind``, see :func:`shop.dirty`) to ``path`` as ``files``
    CSV-with-header or JSON-lines files, replacing what was there.

    Returns ``{"rows": rows written, <kind>: dirty rows of that kind}``, counted during the write.
    """
    observation = Observation(f"raw {path}")
    observed = frame.observe(observation, F.count(F.lit(1)).alias("rows"),
                             *[F.count_if(F.col(shop.DIRT_KIND) == kind).alias(kind) for kind in kinds])
    writer = observed.drop(shop.DIRT_KIND).coalesce(files).write.mode("overwrite")
    if file_format == "csv":
        writer.option("header", True).csv(path)
    else:
        writer.json(path)
    return {name: int(value) for name, value in observation.get.items()}


def write_raw_tables(ctx: JobContext, raw: dict[str, DataFrame], raw_dir: str) -> tuple[dict[str, int], Counter[str]]:
    """Spoil a share of each raw frame (products, orders, events) and write it as export files
    under ``raw_dir/<name>``; returns rows per ``raw/<name>`` and dirty rows per kind."""
    config = ctx.config
    tables: dict[str, int] = {}
    dirt: Counter[str] = Counter()
    for name, frame in raw.items():
        with ctx.step(f"write raw {name}") as step:
            kinds = shop.DIRT_KINDS[name]
            counts = write_raw(shop.dirty(frame, name, config.dirt_share, config.seed), f"{raw_dir}/{name}",
                               RAW_FORMATS[name], config.files_per_table, kinds)
            tables[f"raw/{name}"] = counts["rows"]
            dirt.update({kind: counts[kind] for kind in kinds})
            step.update(rows=counts["rows"], dirty=sum(counts[kind] for kind in kinds))
    return tables, dirt


def write_truth(ctx: JobContext, truth: dict[TableRef, DataFrame]) -> dict[str, int]:
    """Overwrite the bronze truth tables (an empty one is valid: no bundles or promotions
    configured); returns rows per table."""
    tables = {}
    with ctx.step("write bronze truth tables") as step:
        for ref, frame in truth.items():
            rows = frame.count()
            ctx.lakehouse.overwrite(frame, ref, allow_empty=True)
            tables[str(ref)] = rows
            step[ref.name] = rows
    return tables


def run(ctx: JobContext) -> JobSummary:
    """Generate the shop described by ``ctx.config``; return the rows written per raw
    table and truth table, and the dirty rows per kind."""
    config = ctx.config
    raw_dir = config.raw_dir.rstrip("/")
    customers = shop.customers(ctx.spark, config)
    skus = shop.catalog(ctx.spark, config)
    lines = shop.order_lines(customers, skus, config)
    with ctx.step("plan order lines") as step:
        sales_lines = lines.count()
        browse_per_user = shop.browse_events_per_user(config, sales_lines)
        step.update(order_lines=sales_lines, browse_events_per_user=round(browse_per_user, 1))
    tables, dirt = write_raw_tables(ctx, {
        "products": shop.products(skus),
        "orders": shop.orders(lines, config),
        "events": shop.events(customers, skus, lines, config, browse_per_user),
    }, raw_dir)
    tables |= write_truth(ctx, {
        TRUTH_SEGMENTS: shop.truth_segments(customers),
        TRUTH_BUNDLES: shop.truth_bundles(skus, config),
        TRUTH_SKU_DEMAND: shop.truth_sku_demand(skus, config),
        TRUTH_PROMOTIONS: shop.truth_promotions(skus, config),
    })
    metrics = {f"dirt.{kind}": dirt[kind] for kind in sorted(dirt)}
    ctx.run.log_metrics({"rows.order_lines": sales_lines,
                         **{f"rows.{name.replace('/', '.')}": rows for name, rows in tables.items()},
                         **metrics})
    return JobSummary(job=ctx.job, run_id=ctx.run.run_id, tables=tables, metrics=metrics,
                      lines=[f"  raw files under {raw_dir}/{{products,orders,events}}"])
