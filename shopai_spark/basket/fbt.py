"""Frequently bought together: the top companions of every item, from the frequent pairs.

For a frequent pair {x, y} with count j, companion y of item x scores ``confidence(x → y) = j / count(x)``
(the share of x's baskets that also hold y). Companions are ranked by score, then pair count, then
lift, then companion id (a total order, so ranks are deterministic); the first ``top_k`` are kept.
Companions come from frequent pairs only (support >= min_support) and do not depend on
min_confidence.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FBT_COLUMNS = ("sku", "companion_sku", "rank", "score", "pair_count", "lift")


def frequently_bought_together(itemsets: DataFrame, n_baskets: int, top_k: int) -> DataFrame:
    """Frequent itemsets (items, size, count) → FBT_COLUMNS: sku, companion_sku (string),
    rank (int, 1 = best), score (double), pair_count (long), lift (double)."""
    pairs = itemsets.filter(F.col("size") == 2).select(F.col("items")[0].alias("a"), F.col("items")[1].alias("b"),
                                                       F.col("count").alias("pair_count"))
    both_ways = pairs.select(F.col("a").alias("sku"), F.col("b").alias("companion_sku"), "pair_count").unionByName(
        pairs.select(F.col("b").alias("sku"), F.col("a").alias("companion_sku"), "pair_count"))
    singles = itemsets.filter(F.col("size") == 1).select(F.col("items")[0].alias("item"), "count")
    own = singles.select(F.col("item").alias("sku"), F.col("count").alias("sku_count"))
    other = singles.select(F.col("item").alias("companion_sku"), F.col("count").alias("companion_count"))
    scored = (both_ways.join(F.broadcast(own), "sku").join(F.broadcast(other), "companion_sku")
              .withColumn("score", F.col("pair_count") / F.col("sku_count"))
              .withColumn("lift", F.col("pair_count") * F.lit(float(n_baskets))
                          / (F.col("sku_count") * F.col("companion_count"))))
    order = Window.partitionBy("sku").orderBy(F.desc("score"), F.desc("pair_count"), F.desc("lift"),
                                              F.asc("companion_sku"))
    return (scored.withColumn("rank", F.row_number().over(order)).filter(F.col("rank") <= top_k)
            .select("sku", "companion_sku", F.col("rank").cast("int").alias("rank"), "score",
                    F.col("pair_count").cast("long").alias("pair_count"), "lift"))
