"""Item-based collaborative filtering: item–item similarity from co-occurrence, on Spark.

Two items are similar when the same users have them: with ``n_i`` the users of item i and ``c_ij``
the users of both,

    similarity(i, j) = c_ij / sqrt(n_i * n_j)  *  c_ij / (c_ij + shrinkage)

(cosine of the binary user vectors, shrunk towards 0 when few users support it). Each item keeps
its ``neighbours`` most similar items. A user's score for item j is the sum of the similarities of
j to the items the user has (among their neighbour lists); the items the user has, and any other
excluded pair, are never recommended.

Cost: the co-occurrence counts come from a self-join of the (user, item) pairs on the user, so the
join emits sum over users of d_u * (d_u - 1) rows (d_u: the user's distinct items); each user
contributes at most ``max_user_items`` items (a deterministic hash sample), which bounds a heavy
user's share. Scoring emits sum over users of d_u * ``neighbours`` rows. Nothing is collected to
the driver.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def capped_pairs(feedback: DataFrame, max_user_items: int) -> DataFrame:
    """Distinct (user_idx, item_idx) of ``feedback``, at most ``max_user_items`` per user (those with
    the smallest hash of (user, item): the same sample on every run)."""
    pairs = feedback.select("user_idx", "item_idx").distinct()
    by_user = Window.partitionBy("user_idx").orderBy(F.xxhash64("user_idx", "item_idx"), "item_idx")
    return pairs.withColumn("_n", F.row_number().over(by_user)).where(F.col("_n") <= max_user_items).drop("_n")


def item_neighbours(feedback: DataFrame, neighbours: int, shrinkage: float, max_user_items: int) -> DataFrame:
    """``feedback`` (user_idx, item_idx, ...: the training feedback) → item_idx, other_idx,
    similarity, rank: each item's ``neighbours`` most similar other items (see the module
    docstring; ties: lower other_idx first). Items that share no user with another have no row."""
    pairs = capped_pairs(feedback, max_user_items)
    users_of = pairs.groupBy("item_idx").agg(F.count(F.lit(1)).alias("n"))
    left, right = pairs.alias("a"), pairs.alias("b")
    together = left.join(right, (F.col("a.user_idx") == F.col("b.user_idx"))
                         & (F.col("a.item_idx") != F.col("b.item_idx"))) \
        .groupBy(F.col("a.item_idx").alias("item_idx"), F.col("b.item_idx").alias("other_idx")) \
        .agg(F.count(F.lit(1)).alias("both"))
    scored = together.join(users_of, "item_idx").join(
        users_of.select(F.col("item_idx").alias("other_idx"), F.col("n").alias("n_other")), "other_idx")
    both = F.col("both").cast("double")
    similarity = both / F.sqrt(F.col("n").cast("double") * F.col("n_other")) * both / (both + F.lit(float(shrinkage)))
    by_item = Window.partitionBy("item_idx").orderBy(F.desc("similarity"), "other_idx")
    return scored.withColumn("similarity", similarity).withColumn("rank", F.row_number().over(by_item)) \
        .where(F.col("rank") <= neighbours).select("item_idx", "other_idx", "similarity", "rank")


def item_cf_recommend(users: DataFrame, feedback: DataFrame, neighbours: DataFrame, n: int,
                      exclude: DataFrame | None = None) -> DataFrame:
    """Top ``n`` items for each ``user_idx`` of ``users`` → user_idx, rank, item_idx, score.

    ``feedback``: the users' items (user_idx, item_idx, ...); ``neighbours``: :func:`item_neighbours`;
    ``exclude``: (user_idx, item_idx) never recommended (pairs may repeat), besides the user's own
    items. score = sum of the similarities to the user's items; ties: lower item_idx first. A
    user whose items have fewer than ``n`` neighbours left gets a shorter list (none: no row).
    """
    history = feedback.select("user_idx", "item_idx").distinct().join(users.select("user_idx").distinct(), "user_idx")
    scores = history.join(neighbours.select("item_idx", "other_idx", "similarity"), "item_idx") \
        .groupBy("user_idx", F.col("other_idx").alias("item_idx")).agg(F.sum("similarity").alias("score"))
    scores = scores.join(history, ["user_idx", "item_idx"], "left_anti")
    if exclude is not None:
        scores = scores.join(exclude.select("user_idx", "item_idx").distinct(), ["user_idx", "item_idx"], "left_anti")
    by_user = Window.partitionBy("user_idx").orderBy(F.desc("score"), "item_idx")
    return scores.withColumn("rank", F.row_number().over(by_user)).where(F.col("rank") <= n) \
        .select("user_idx", "rank", "item_idx", "score")
