"""Association rules and their metrics from frequent itemsets' integer counts, on the cluster.

Every frequent itemset ``S`` with at least two items gives one candidate rule ``S - {c} → {c}`` per
item ``c`` (single-item consequents, as MLlib). With ``n`` baskets, ``a`` = antecedent count,
``b`` = consequent count and ``j`` = count of ``S``:

- support = j / n, antecedent_support = a / n, consequent_support = b / n
- confidence = j / a, lift = j·n / (a·b), leverage = j/n − (a/n)·(b/n)
- conviction = (1 − b/n) / (1 − j/a) = a·(n − b) / (n·(a − j)); null when confidence is 1 (infinite)

The confidence threshold is applied without floating point: with min_confidence = p/q exactly (its
decimal text), a rule is kept iff ``j·q >= p·a`` (DECIMAL(38, 0) arithmetic).
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopai_spark.basket.config import exact_fraction

RULE_COLUMNS = (
    "antecedent", "consequent", "antecedent_size", "antecedent_count", "consequent_count", "joint_count",
    "n_baskets", "support", "confidence", "lift", "leverage", "conviction", "antecedent_support",
    "consequent_support",
)


def _exact(value: int | Column) -> Column:
    column = value if isinstance(value, Column) else F.lit(Decimal(value))
    return column.cast("decimal(38,0)")


def meets_confidence(joint: Column, antecedent: Column, min_confidence: float) -> Column:
    """``joint / antecedent >= min_confidence``, compared exactly in integers."""
    threshold = exact_fraction(min_confidence)
    return _exact(joint) * _exact(threshold.denominator) >= _exact(threshold.numerator) * _exact(antecedent)


def rule_metrics(joint: str, antecedent: str, consequent: str, n_baskets: int) -> list[Column]:
    """Metric columns from the three integer count columns and the number of baskets."""
    j, a, b, n = (F.col(joint).cast("double"), F.col(antecedent).cast("double"),
                  F.col(consequent).cast("double"), F.lit(float(n_baskets)))
    return [
        F.lit(n_baskets).cast("long").alias("n_baskets"),
        (j / n).alias("support"),
        (j / a).alias("confidence"),
        ((j / a) / (b / n)).alias("lift"),
        (j / n - (a / n) * (b / n)).alias("leverage"),
        F.when(F.col(joint) == F.col(antecedent), F.lit(None).cast("double"))
         .otherwise((a * (n - b)) / (n * (a - j))).alias("conviction"),
        (a / n).alias("antecedent_support"),
        (b / n).alias("consequent_support"),
    ]


def association_rules(itemsets: DataFrame, n_baskets: int, min_confidence: float) -> DataFrame:
    """Frequent itemsets (items sorted, size, count) → rules with confidence >= min_confidence.

    Output: RULE_COLUMNS — antecedent (array<string>, sorted), consequent (array<string>, one item),
    antecedent_size (int), the three counts (long), n_baskets and the metrics (double).
    """
    candidates = (itemsets.filter(F.col("size") >= 2)
                  .select("items", F.col("count").alias("joint_count"), F.explode("items").alias("item"))
                  .select(F.array_remove("items", F.col("item")).alias("antecedent"),
                          F.array("item").alias("consequent"), "item", "joint_count"))
    antecedents = itemsets.select(F.col("items").alias("antecedent"), F.col("count").alias("antecedent_count"))
    singles = itemsets.filter(F.col("size") == 1).select(F.col("items")[0].alias("item"),
                                                         F.col("count").alias("consequent_count"))
    rules = (candidates.join(antecedents, "antecedent").join(F.broadcast(singles), "item")
             .filter(meets_confidence(F.col("joint_count"), F.col("antecedent_count"), min_confidence)))
    return rules.select(
        "antecedent", "consequent", F.size("antecedent").alias("antecedent_size"),
        F.col("antecedent_count").cast("long").alias("antecedent_count"),
        F.col("consequent_count").cast("long").alias("consequent_count"),
        F.col("joint_count").cast("long").alias("joint_count"),
        *rule_metrics("joint_count", "antecedent_count", "consequent_count", n_baskets),
    )


def with_names(rules: DataFrame, names: DataFrame) -> DataFrame:
    """Rules + antecedent_names, consequent_names (array<string>, same order as the items; an item
    without a name keeps its id) and rule_text ``"{a, b} => {c}"``.

    ``names``: item (string), name (string), one row per item; pass only the frequent items (they
    are the only ones rules can mention), so the lookup map stays small and is broadcast.
    """
    lookup = F.broadcast(names.groupBy().agg(F.map_from_entries(F.collect_list(F.struct("item", "name")))
                                             .alias("_names")))

    def named(column: str) -> Column:
        return F.transform(column, lambda i: F.coalesce(F.try_element_at(F.col("_names"), i), i))

    out = rules.crossJoin(lookup).withColumn("antecedent_names", named("antecedent")).withColumn(
        "consequent_names", named("consequent"))
    text = F.concat(F.lit("{"), F.array_join("antecedent_names", ", "), F.lit("} => {"),
                    F.array_join("consequent_names", ", "), F.lit("}"))
    return out.withColumn("rule_text", text).drop("_names")
