"""Baselines evaluated on the same split as ALS.

* Popularity (ranking): every user gets the items most users interacted with in train, minus
  the items excluded for that user. It reuses the fast top-N with a rank-1 "model": each user's
  factor is 1 and each item's factor its number of distinct train users (ties: lower item_idx first).
* Item mean (explicit ratings): predict the item's mean train rating, the global mean for items
  unseen in train.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.recommend.topn import ItemFactors, recommend_all


def item_popularity(interactions: DataFrame) -> DataFrame:
    """(user_idx, item_idx, ...) → item_idx, users (distinct users per item)."""
    return interactions.groupBy("item_idx").agg(F.countDistinct("user_idx").alias("users"))


def popularity_factors(interactions: DataFrame) -> ItemFactors:
    """Popularity as rank-1 item factors (one row per item: catalogue-sized, collected)."""
    table = item_popularity(interactions).toPandas().sort_values("item_idx")
    return ItemFactors(table["item_idx"].to_numpy(np.int64),
                       table["users"].to_numpy(np.float32).reshape(-1, 1))


def popularity_recommend(users: DataFrame, interactions: DataFrame, n: int, exclude: DataFrame | None = None,
                         block_size: int = 1024) -> DataFrame:
    """Top ``n`` popular items for each ``user_idx`` of ``users`` → user_idx, rank, item_idx, score
    (score = distinct train users of the item)."""
    ones = users.select(F.col("user_idx").alias("id"), F.array(F.lit(1.0).cast("float")).alias("features"))
    return recommend_all(ones, popularity_factors(interactions), n, exclude, block_size)


def item_mean_predictions(train: DataFrame, test: DataFrame) -> DataFrame:
    """``test`` (item_idx, rating, ...) plus ``prediction``: the item's mean train rating, or the
    global train mean for items without train ratings."""
    overall = train.agg(F.avg("rating")).first()[0]
    means = train.groupBy("item_idx").agg(F.avg("rating").alias("_item_mean"))
    return test.join(means, "item_idx", "left").withColumn(
        "prediction", F.coalesce("_item_mean", F.lit(overall))).drop("_item_mean")
