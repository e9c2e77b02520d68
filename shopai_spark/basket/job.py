"""Association-rules job: order baskets → guard → FP-Growth → rules and frequently-bought-together.

Reads silver.order_items, silver.orders and silver.products; writes gold.frequent_itemsets,
gold.association_rules and gold.frequently_bought_together. All three are computed and checked to
be non-empty before any is written; if a write fails, the tables already written in this run are
restored to their previous version. A support that would blow up the search stops the job before
mining (see guard.py) with nothing written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.basket.baskets import basket_counts, order_baskets, usable
from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.basket.fbt import frequently_bought_together
from shopai_spark.basket.guard import SearchEstimate, check_search
from shopai_spark.basket.mining import frequent_itemsets, min_count, mllib_support
from shopai_spark.basket.rules import RULE_COLUMNS, association_rules, with_names
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import ORDER_ITEMS, ORDERS, PRODUCTS
from shopai_spark.tables import EmptyOutputError, TableRef, TableWrite, with_run_metadata
from shopai_spark.tracking import JobRun

log = logging.getLogger(__name__)

FREQUENT_ITEMSETS = TableRef("gold", "frequent_itemsets")
ASSOCIATION_RULES = TableRef("gold", "association_rules")
FREQUENTLY_BOUGHT_TOGETHER = TableRef("gold", "frequently_bought_together")
OUTPUTS = (FREQUENT_ITEMSETS, ASSOCIATION_RULES, FREQUENTLY_BOUGHT_TOGETHER)
NAMED_RULE_COLUMNS = (*RULE_COLUMNS, "antecedent_names", "consequent_names", "rule_text")
RULE_ORDER = ("lift", "confidence", "support", "rule_text")  # descending, descending, descending, ascending


@dataclass
class Mined:
    """The three outputs (persisted) and the counts that describe them."""

    itemsets: DataFrame
    rules: DataFrame
    fbt: DataFrame
    min_count: int
    estimate: SearchEstimate
    itemsets_by_size: dict[int, int]
    rules_by_length: dict[int, int]

    def unpersist(self) -> None:
        for frame in (self.itemsets, self.rules, self.fbt):
            frame.unpersist()


def item_names(products: DataFrame, level: str) -> DataFrame:
    """silver.products → item, name: SKU → title (the SKU when the title is missing) at SKU level,
    category → itself at category level."""
    if level == "category":
        return products.select(F.col("category").alias("item")).dropna().distinct().withColumn("name", F.col("item"))
    return products.select(F.col("sku").alias("item"), F.coalesce("title", "sku").alias("name")).dropDuplicates(["item"])


def mine(baskets: DataFrame, n_baskets: int, max_size: int, config: FpGrowthConfig,
         names: DataFrame | None = None) -> Mined:
    """Guard, FP-Growth, rules and FBT on usable baskets (order_id, items, size; persisted by the caller).
    FP-Growth mines the guard's baskets reduced to the frequent items (same itemsets, less work).

    ``names`` (item, name) gives the rules readable names; without it names are the item ids.
    Raises SearchTooLargeError before mining when the search is too large.
    """
    estimate, reduced = check_search(baskets, n_baskets, max_size, config.min_support, config.max_itemsets)
    count = min_count(config.min_support, n_baskets)
    itemsets = frequent_itemsets(reduced.baskets, n_baskets, count, config.num_partitions, reduced.rows).persist(
        StorageLevel.MEMORY_AND_DISK)
    by_size = {int(r["size"]): int(r["count"]) for r in itemsets.groupBy("size").count().collect()}
    reduced.unpersist()  # the itemsets are cached now
    singles = itemsets.filter(F.col("size") == 1).select(F.col("items")[0].alias("item"))
    frequent_names = (singles.join(names, "item") if names is not None
                      else singles.withColumn("name", F.col("item")))
    rules = (with_names(association_rules(itemsets, n_baskets, config.min_confidence), frequent_names)
             .select(*NAMED_RULE_COLUMNS).persist(StorageLevel.MEMORY_AND_DISK))
    by_length = {int(r["length"]): int(r["count"]) for r in
                 rules.groupBy((F.col("antecedent_size") + 1).alias("length")).count().collect()}
    fbt = frequently_bought_together(itemsets, n_baskets, config.fbt_top_k).persist(StorageLevel.MEMORY_AND_DISK)
    return Mined(itemsets, rules, fbt, count, estimate, by_size, by_length)


def check_outputs(mined: Mined, config: FpGrowthConfig, n_baskets: int) -> int:
    """Refuse to go on (nothing written) when an output would be empty; returns the FBT row count."""
    if not mined.itemsets_by_size:
        raise EmptyOutputError(f"fpgrowth: no itemset reaches min_support={config.min_support} (min count "
                               f"{mined.min_count} of {n_baskets:,} baskets); lower it. Previous outputs kept")
    if not mined.rules_by_length:
        raise EmptyOutputError(f"fpgrowth: no rule reaches min_confidence={config.min_confidence} "
                               f"({sum(mined.itemsets_by_size.values()):,} frequent itemsets); lower "
                               "fpgrowth.min_confidence or fpgrowth.min_support. Previous outputs kept")
    fbt_rows = mined.fbt.count()
    if fbt_rows == 0:  # pragma: no cover - rules imply frequent pairs
        raise EmptyOutputError("fpgrowth: no frequent pair for frequently-bought-together. Previous outputs kept")
    return fbt_rows


def write_outputs(ctx: JobContext, mined: Mined) -> None:
    """Overwrite the three gold tables; on failure restore the ones already written."""
    plan = [(mined.itemsets, FREQUENT_ITEMSETS), (mined.rules, ASSOCIATION_RULES),
            (mined.fbt, FREQUENTLY_BOUGHT_TOGETHER)]
    ctx.lakehouse.overwrite_all([TableWrite(with_run_metadata(frame, ctx.run.run_id), ref) for frame, ref in plan])


def top_rules(rules: DataFrame, limit: int) -> pd.DataFrame:
    """The ``limit`` best rules by lift (then confidence, support) as pandas, arrays as text."""
    rows = rules.orderBy(*[F.desc(c) for c in RULE_ORDER[:-1]], F.asc(RULE_ORDER[-1])).limit(limit).toPandas()
    for column in ("antecedent", "consequent", "antecedent_names", "consequent_names"):
        rows[column] = rows[column].map(lambda items: " | ".join(items))
    return rows


def rules_scatter(rules: DataFrame, limit: int, seed: int = 42) -> Figure:
    """Support vs confidence of at most ``limit`` rules (a random sample), coloured by lift."""
    sample = rules.orderBy(F.rand(seed)).limit(limit).select("support", "confidence", "lift").toPandas()
    figure = Figure(figsize=(7, 5))
    axes = figure.subplots()
    points = axes.scatter(sample["support"], sample["confidence"], c=sample["lift"], cmap="viridis", s=12)
    figure.colorbar(points, ax=axes, label="lift")
    axes.set_xscale("log")
    axes.set_xlabel("support (log scale)")
    axes.set_ylabel("confidence")
    axes.set_title(f"Association rules ({len(sample):,} shown)")
    figure.tight_layout()
    return figure


def log_run(run: JobRun, mined: Mined, counts: dict[str, int], config: FpGrowthConfig) -> dict[str, float]:
    """Params, counts by size/length, guard figures, the top-rules CSV and the scatter PNG."""
    n = counts["baskets"]
    run.log_params({"fpgrowth.n_baskets": n, "fpgrowth.min_count": mined.min_count,
                    "fpgrowth.mllib_min_support": mllib_support(mined.min_count, n)})
    metrics: dict[str, float] = {f"baskets.{k}": v for k, v in counts.items()}
    metrics.update({"guard.frequent_items": mined.estimate.frequent_items,
                    "guard.frequent_pairs": mined.estimate.frequent_pairs,
                    "guard.estimated_itemsets": mined.estimate.estimated_itemsets})
    metrics.update({f"itemsets.size_{k}": v for k, v in sorted(mined.itemsets_by_size.items())})
    metrics.update({f"rules.length_{k}": v for k, v in sorted(mined.rules_by_length.items())})
    metrics["itemsets"] = sum(mined.itemsets_by_size.values())
    metrics["rules"] = sum(mined.rules_by_length.values())
    run.log_metrics(metrics)
    run.log_table(top_rules(mined.rules, config.top_rules), "top_rules")
    run.log_figure(rules_scatter(mined.rules, config.plot_rules), "rules_support_confidence")
    return metrics


def run(ctx: JobContext) -> JobSummary:
    """Mine the order baskets (see module docstring); the summary lists the top rules by lift."""
    config = ctx.config
    needed = [ORDERS.ref, ORDER_ITEMS.ref, *([PRODUCTS.ref] if config.level == "category" else [])]
    used = ctx.require_inputs(needed, optional=[PRODUCTS.ref])

    with ctx.step("baskets") as step:
        products = ctx.read(PRODUCTS.ref) if PRODUCTS.ref in used else None
        status = order_baskets(ctx.read(ORDER_ITEMS.ref), ctx.read(ORDERS.ref), config, products).persist(
            StorageLevel.MEMORY_AND_DISK)
        counts = basket_counts(status)
        baskets = usable(status).persist(StorageLevel.MEMORY_AND_DISK)
        status.unpersist()
        step.update(counts)
        if counts["baskets"] == 0:
            raise EmptyOutputError(f"fpgrowth: no usable basket ({counts}); previous outputs kept")
    n = counts["baskets"]

    with ctx.step("guard + FP-Growth + rules") as step:
        names = item_names(products, config.level) if products is not None else None
        mined = mine(baskets, n, counts["max_basket_size"], config, names)
        step.update(min_count=mined.min_count, itemsets=sum(mined.itemsets_by_size.values()),
                    rules=sum(mined.rules_by_length.values()))

    with ctx.step("write gold") as step:
        fbt_rows = check_outputs(mined, config, n)
        write_outputs(ctx, mined)
        step.update(fbt_rows=fbt_rows)

    metrics = log_run(ctx.run, mined, counts, config)
    summary = summarize(ctx, mined, metrics, fbt_rows, n)
    mined.unpersist()
    baskets.unpersist()
    return summary


def summarize(ctx: JobContext, mined: Mined, metrics: dict[str, float], fbt_rows: int, baskets: int) -> JobSummary:
    """Table counts, baskets and min count, and the top ``fpgrowth.summary_rules`` rules by lift."""
    config = ctx.config
    best = top_rules(mined.rules, config.summary_rules)
    summary = JobSummary(
        job=ctx.job, run_id=ctx.run.run_id,
        tables={str(FREQUENT_ITEMSETS): int(metrics["itemsets"]), str(ASSOCIATION_RULES): int(metrics["rules"]),
                str(FREQUENTLY_BOUGHT_TOGETHER): fbt_rows},
        metrics={"baskets": baskets, "min_count": mined.min_count})
    summary.lines.append(f"  level={config.level} min_support={config.min_support} "
                         f"min_confidence={config.min_confidence}; top rules by lift:")
    summary.lines += [f"  {r.rule_text}  lift={r.lift:.2f} conf={r.confidence:.2f} support={r.support:.4f}"
                      for r in best.itertuples()]
    return summary
