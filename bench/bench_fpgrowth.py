"""Bench the fpgrowth job's mining against MLlib FPGrowth on the same baskets (no silver tables needed).

small (``make bench``): the Groceries baskets (``../shared/data/groceries.csv``, 9,835 baskets, at
min_support 0.001 / min_confidence 0.8, where the exact truth is 13,492 itemsets and 410 rules;
without ``../shared`` the stage says so and is skipped), then 1,000,000 synthetic baskets; large:
1,000,000 then 5,000,000 synthetic baskets. A synthetic basket has 1-6 draws from 5,000 SKUs with
log-uniform (Zipf-like) popularity; 3% of baskets also hold one of 20 planted 3-item bundles
(min_support 0.001, min_confidence 0.5; how many bundle rules came back with lift >= 10 is recorded).

For each basket set: ``fpgrowth.mine_<set>`` is the job's :func:`mine` (guard + FP-Growth + rules +
frequently-bought-together, every output materialised) and ``fpgrowth.mllib_<set>`` the peer: MLlib
``FPGrowth`` fitted at the same minimum count, its ``freqItemsets`` cached and counted (so the rules
do not mine a second time) and its ``associationRules`` computed; the peer record carries
``job_vs_mllib`` (job seconds / MLlib seconds; issue target <= 1.3). The MLlib peer runs first, so
the first-use costs of the session fall on it, not on the job.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from pyspark import StorageLevel
from pyspark.ml.fpm import FPGrowth
from pyspark.sql import functions as F

from shopai_spark.basket.job import mine
from shopai_spark.basket.mining import min_count, mllib_support

SIZES = {"small": ("groceries", 1_000_000), "large": (1_000_000, 5_000_000)}
GROCERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "groceries.csv"
SETTINGS = {"groceries": (0.001, 0.8), "synthetic": (0.001, 0.5)}  # min_support, min_confidence
SKUS = 5_000
BUNDLES = 20
BUNDLE_SHARE = 0.03
MAX_DRAWS = 6


def synthetic_baskets(spark, baskets: int, partitions: int = 16, seed: int = 1):
    """``baskets`` rows: order_id, items (array<string>, distinct, sorted), size."""
    draws = [F.concat(F.lit("S"), F.floor(F.exp(F.rand(seed + 10 + d) * math.log(SKUS))).cast("int").cast("string"))
             for d in range(MAX_DRAWS)]
    count = (F.floor(F.rand(seed) * MAX_DRAWS) + 1).cast("int")
    bundle = F.floor(F.rand(seed + 1) * BUNDLES).cast("int").cast("string")
    bundle_items = F.array(*[F.concat(F.lit("B"), bundle, F.lit(f"_{j}")) for j in range(3)])
    items = F.slice(F.array(*draws), 1, count)
    items = F.when(F.rand(seed + 2) < BUNDLE_SHARE, F.concat(items, bundle_items)).otherwise(items)
    return (spark.range(0, baskets, numPartitions=partitions)
            .select(F.concat(F.lit("o"), F.col("id").cast("string")).alias("order_id"),
                    F.array_sort(F.array_distinct(items)).alias("items"))
            .withColumn("size", F.size("items")))


def groceries_baskets(spark, path: Path):
    """Groceries: one basket per line, comma-separated items, each stripped (some end in a blank)."""
    items = F.array_sort(F.array_distinct(F.filter(F.transform(F.split("value", ","), F.trim), lambda i: i != "")))
    return (spark.read.text(str(path)).select(items.alias("items"))
            .select(F.monotonically_increasing_id().cast("string").alias("order_id"), "items",
                    F.size("items").alias("size")))


def mllib_peer(baskets, n: int, count: int, min_confidence: float) -> tuple[int, int]:
    """MLlib FPGrowth at min count ``count``: itemsets cached and counted, rules computed (noop sink)."""
    model = FPGrowth(itemsCol="items", minSupport=mllib_support(count, n), minConfidence=min_confidence).fit(baskets)
    itemsets = model.freqItemsets.persist(StorageLevel.MEMORY_AND_DISK)
    found = itemsets.count()
    rules = model.associationRules.persist(StorageLevel.MEMORY_AND_DISK)
    rule_count = rules.count()
    rules.unpersist()
    itemsets.unpersist()
    return found, rule_count


def bench_one(bench, label: str, baskets, config) -> None:
    """The MLlib peer then the job's mining on ``baskets`` (persisted); records the ratio."""
    n = baskets.count()
    max_size = baskets.agg(F.max("size")).first()[0]
    count = min_count(config.min_support, n)
    with bench.stage(f"fpgrowth.mllib_{label}", baskets=n, min_count=count) as peer:
        started = time.perf_counter()
        itemsets, rules = mllib_peer(baskets, n, count, config.min_confidence)
        mllib_seconds = time.perf_counter() - started
        peer.update(itemsets=itemsets, rules=rules)
    with bench.stage(f"fpgrowth.mine_{label}", baskets=n, min_support=config.min_support,
                     min_confidence=config.min_confidence) as extra:
        started = time.perf_counter()
        mined = mine(baskets, n, max_size, config)
        fbt_rows = mined.fbt.count()
        job_seconds = time.perf_counter() - started
        bundle_rules = (mined.rules.filter((F.col("lift") >= 10) & F.col("consequent")[0].startswith("B"))
                        .select(F.regexp_extract(F.col("consequent")[0], r"^(B\d+)_", 1).alias("bundle"))
                        .distinct().count())
        extra.update(min_count=mined.min_count, itemsets=sum(mined.itemsets_by_size.values()),
                     rules=sum(mined.rules_by_length.values()), fbt_rows=fbt_rows,
                     estimated_itemsets=round(mined.estimate.estimated_itemsets),
                     job_vs_mllib=round(job_seconds / mllib_seconds, 2))
        if label != "groceries":
            extra.update(bundles_recovered=f"{bundle_rules}/{BUNDLES}")
    mined.unpersist()


def run(bench) -> None:
    base = bench.config().fpgrowth
    for size in SIZES[bench.size]:
        if size == "groceries" and not GROCERIES.exists():
            print(f"[bench] fpgrowth groceries skipped: {GROCERIES} not found (needs ../shared/data)", flush=True)
            continue
        support, confidence = SETTINGS["groceries" if size == "groceries" else "synthetic"]
        config = dataclasses.replace(base, min_support=support, min_confidence=confidence)
        label = size if size == "groceries" else f"{size // 1000:,}k"
        with bench.stage(f"fpgrowth.baskets_{label}"):
            baskets = (groceries_baskets(bench.spark, GROCERIES) if size == "groceries"
                       else synthetic_baskets(bench.spark, size)).persist(StorageLevel.MEMORY_AND_DISK)
            baskets.count()
        bench_one(bench, label, baskets, config)
        baskets.unpersist()
