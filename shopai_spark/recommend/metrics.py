"""Evaluation metrics computed on the cluster; only one aggregate row reaches the driver.

Error metrics (explicit feedback): RMSE and MAE of ``prediction`` against ``rating``.

Ranking metrics at K over the users of ``truth`` (every user with at least one relevant test item),
given each user's ranked recommendations (``rank`` 1, 2, ...; only rank <= K counts):

* precision@K = hits / K; recall@K = hits / |relevant|; hit rate = share of users with a hit;
* NDCG@K = sum over hits of 1/log2(rank + 1), divided by the ideal sum over min(|relevant|, K) ranks;
* MAP@K = mean over users of (sum over hits at rank r of precision@r) / min(|relevant|, K);
* coverage = distinct items recommended (rank <= K) to the evaluated users / ``catalog_size``;
* served share = share of users with at least one recommendation (rank <= K), hit or not.

A user without recommendations scores 0 on every per-user metric.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def error_metrics(predictions: DataFrame, label: str = "rating", prediction: str = "prediction") -> dict[str, float]:
    """{"rmse", "mae", "predictions"} over rows with a non-null, non-NaN prediction."""
    valid = predictions.where(F.col(prediction).isNotNull() & ~F.isnan(prediction))
    error = F.col(prediction).cast("double") - F.col(label).cast("double")
    row = valid.agg(F.sqrt(F.avg(error * error)).alias("rmse"), F.avg(F.abs(error)).alias("mae"),
                    F.count(F.lit(1)).alias("n")).first()
    return {"rmse": row["rmse"], "mae": row["mae"], "predictions": float(row["n"])}


def _log2(column) -> F.Column:
    return F.log2(column.cast("double"))


def ranking_metrics(recs: DataFrame, truth: DataFrame, k: int, catalog_size: int,
                    user_col: str = "user_idx", item_col: str = "item_idx") -> dict[str, float]:
    """Precision/recall/NDCG/MAP@K, hit rate, coverage and served share (see module docstring).

    ``recs``: user_col, item_col, rank (1-based). ``truth``: user_col, item_col of relevant items
    (duplicates ignored). Returns the metrics and ``users_evaluated``.
    """
    relevant = truth.select(user_col, item_col).distinct()
    users = relevant.groupBy(user_col).agg(F.count(F.lit(1)).alias("n_rel"))
    top = recs.where(F.col("rank") <= k).join(users.select(user_col), user_col).select(user_col, item_col, "rank")
    by_rank = Window.partitionBy(user_col).orderBy("rank")
    hits = top.join(relevant, [user_col, item_col]).withColumn("hit_no", F.row_number().over(by_rank))
    served = top.groupBy(user_col).agg(F.lit(1.0).alias("served"))
    per_hit = hits.groupBy(user_col).agg(
        F.count(F.lit(1)).alias("hits"),
        F.sum(1.0 / _log2(F.col("rank") + 1)).alias("dcg"),
        F.sum(F.col("hit_no") / F.col("rank")).alias("ap_sum"))
    ideal_n = F.least(F.col("n_rel"), F.lit(k))
    idcg = F.aggregate(F.sequence(F.lit(1), ideal_n), F.lit(0.0), lambda acc, i: acc + 1.0 / _log2(i + 1))
    per_user = users.join(per_hit, user_col, "left").join(served, user_col, "left") \
        .fillna(0, subset=["hits", "dcg", "ap_sum", "served"]).select(
        (F.col("hits") / k).alias("precision"),
        (F.col("hits") / F.col("n_rel")).alias("recall"),
        (F.col("dcg") / idcg).alias("ndcg"),
        (F.col("ap_sum") / ideal_n).alias("ap"),
        (F.col("hits") > 0).cast("double").alias("hit"), "served")
    row = per_user.agg(F.avg("precision").alias("precision_at_k"), F.avg("recall").alias("recall_at_k"),
                       F.avg("ndcg").alias("ndcg_at_k"), F.avg("ap").alias("map_at_k"),
                       F.avg("hit").alias("hit_rate"), F.avg("served").alias("served_share"),
                       F.count(F.lit(1)).alias("users_evaluated")).first()
    covered = top.select(item_col).distinct().count()
    metrics = {name: (float(row[name]) if row[name] is not None else None)
               for name in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "hit_rate", "served_share")}
    metrics["coverage"] = covered / catalog_size if catalog_size else None
    metrics["users_evaluated"] = float(row["users_evaluated"])
    return metrics
