"""Bench the fpgrowth library on synthetic baskets drawn with ``spark.range`` (no silver tables needed).

small (``make bench``): 100,000 then 1,000,000 baskets, to show how time grows; large: 1,000,000 then
5,000,000. Each basket has 1-6 draws from 5,000 SKUs with log-uniform (Zipf-like) popularity; 3% of
baskets also hold one of 20 planted 3-item bundles. Stages: draw + persist the baskets; then guard +
FP-Growth + rules + frequently-bought-together (all outputs materialised) at min_support 0.001,
min_confidence 0.5, and how many planted bundle rules came back with lift >= 10.
"""

from __future__ import annotations

import math

from pyspark import StorageLevel
from pyspark.sql import functions as F

from shopai_spark.basket.job import mine

SIZES = {"small": (100_000, 1_000_000), "large": (1_000_000, 5_000_000)}
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


def run(bench) -> None:
    config = bench.config("fpgrowth.min_support=0.001", "fpgrowth.min_confidence=0.5").fpgrowth
    for n in SIZES[bench.size]:
        label = f"{n // 1000:,}k"   # one record per basket count, so the growth from one to the next stays visible
        with bench.stage(f"fpgrowth.baskets_{label}", baskets=n):
            baskets = synthetic_baskets(bench.spark, n).persist(StorageLevel.MEMORY_AND_DISK)
            max_size = baskets.agg(F.max("size")).first()[0]
        with bench.stage(f"fpgrowth.mine_{label}", baskets=n, min_support=config.min_support,
                         min_confidence=config.min_confidence) as extra:
            mined = mine(baskets, n, max_size, config)
            fbt_rows = mined.fbt.count()
            bundle_rules = (mined.rules.filter((F.col("lift") >= 10) & F.col("consequent")[0].startswith("B"))
                            .select(F.regexp_extract(F.col("consequent")[0], r"^(B\d+)_", 1).alias("bundle"))
                            .distinct().count())
            extra.update(min_count=mined.min_count, itemsets=sum(mined.itemsets_by_size.values()),
                         rules=sum(mined.rules_by_length.values()), fbt_rows=fbt_rows,
                         bundles_recovered=f"{bundle_rules}/{BUNDLES}",
                         estimated_itemsets=round(mined.estimate.estimated_itemsets))
        mined.unpersist()
        baskets.unpersist()
