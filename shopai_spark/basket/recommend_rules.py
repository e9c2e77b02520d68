"""Association rules as a recommender: each user's items fire rules, whose consequents are the list.

A rule fires for a user when every item of its antecedent is among the user's items (subset, any
antecedent size). It recommends its consequent, scored by the rule's confidence; an item several
fired rules recommend keeps its best confidence, ties broken by the best lift. Items the user has,
and any excluded (user, item) pair, are never recommended. A user whose items fire no rule gets no
list: rules mined at a support that keeps the search small usually cannot serve everyone.

Cost: one row per (user, antecedent item of a rule) in the match, then per fired rule; nothing is
collected to the driver.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def rule_recommendations(history: DataFrame, rules: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
    """Top ``n`` items per user from association rules (see the module docstring).

    ``history``: user_id, item (string), the users' own items (duplicates allowed). ``rules``:
    antecedent (array<string>), consequent (array<string> of one item), confidence, lift (as
    :func:`~shopai_spark.basket.rules.association_rules` gives them). ``exclude``: user_id, item
    never recommended besides the user's own items (pairs may repeat).
    Output: user_id, rank (1 = best), item, confidence, lift; ranked by confidence, then lift, then
    item. Users without a fired rule have no row.
    """
    own = history.select("user_id", "item").distinct()
    rule = rules.select("antecedent", F.col("consequent")[0].alias("item"), "confidence", "lift")
    needs = rule.select("antecedent", F.explode("antecedent").alias("needed")).distinct()
    fired = own.join(needs, own["item"] == needs["needed"]).groupBy("user_id", "antecedent") \
        .agg(F.count(F.lit(1)).alias("matched")).where(F.col("matched") == F.size("antecedent"))
    best = fired.join(rule, "antecedent").groupBy("user_id", "item") \
        .agg(F.max(F.struct("confidence", "lift")).alias("best"))
    best = best.join(own, ["user_id", "item"], "left_anti")
    if exclude is not None:
        best = best.join(exclude.select("user_id", "item").distinct(), ["user_id", "item"], "left_anti")
    by_user = Window.partitionBy("user_id").orderBy(F.desc("best.confidence"), F.desc("best.lift"), "item")
    return best.withColumn("rank", F.row_number().over(by_user)).where(F.col("rank") <= n) \
        .select("user_id", "rank", "item", "best.confidence", "best.lift")
