"""Bench stages of the ALS job on synthetic implicit feedback with planted taste clusters.

small: 20,000 users x 4,000 items, rank 32; large: 100,000 users x 20,000 items, rank 64 (the
issue's target size); 20 interactions per user. Stages: fit implicit ALS, then the fast top-10
for every user (numpy in mapInPandas, :func:`recommend_all`) and MLlib's ``recommendForAllUsers``
(both fully computed into a no-op sink), and a parity check on 500 sampled users against
``recommendForUserSubset``: share of (user, rank) with the same item and the largest score gap.
Item-based CF on the same interactions: the item neighbours (co-occurrence self-join, 50 per
item) and the top-10 for every user from them, each fully computed into a no-op sink.
Fold-in (stage als.fold_in): the last NEW_USER_SHARE of users arrive after the model's cut-off;
the first half of each new user's items (in a fixed hash order: their "earlier" ones) are known,
the rest held out. The model fitted on the users before the cut-off folds the new users in from
their known items (:func:`fold_in`, no refit); a full retrain on every known interaction is the
reference. Both are scored on the held-out items of the new users (NDCG@10 and the other ranking
metrics, known items excluded): ``ndcg_ratio`` = fold-in / retrain (target >= 0.9), with the
seconds of the fold-in and of the retrain.
Before the two timed top-N stages, both are run once on WARMUP_USERS users (untimed): the first
Python UDF of a session starts the Python workers and imports numpy/pandas/pyarrow, and the first
MLlib call compiles its code paths; neither is part of a steady-state top-N.
"""

from __future__ import annotations

import time

from pyspark import StorageLevel
from pyspark.sql import Window
from pyspark.sql import functions as F

from shopai_spark.recommend.foldin import fold_in
from shopai_spark.recommend.itemcf import item_cf_recommend, item_neighbours
from shopai_spark.recommend.metrics import ranking_metrics
from shopai_spark.recommend.topn import collect_item_factors, recommend_all, recommendations_to_long
from shopai_spark.recommend.train import Params, fit

SIZES = {"small": (20_000, 4_000, 32, 10), "large": (100_000, 20_000, 64, 5)}  # users, items, rank, iterations
PER_USER = 20
CLUSTERS = 50
TOP = 10
PARITY_USERS = 500
WARMUP_USERS = 2_000
NEW_USER_SHARE = 0.1


def synthetic_interactions(spark, users: int, items: int, partitions: int = 8):
    """user_idx, item_idx, rating: 80% of a user's items from the user's cluster, 20% anywhere."""
    per_cluster = items // CLUSTERS
    rows = spark.range(0, users * PER_USER, numPartitions=partitions)
    user = (F.col("id") / PER_USER).cast("int")
    noise = F.abs(F.xxhash64("id", F.lit(1))) % 1000
    in_cluster = (user % CLUSTERS) * per_cluster + F.abs(F.xxhash64("id", F.lit(2))) % per_cluster
    anywhere = F.abs(F.xxhash64("id", F.lit(3))) % items
    item = F.when(noise < 800, in_cluster).otherwise(anywhere).cast("int")
    weight = (F.abs(F.xxhash64("id", F.lit(4))) % 5 + 1).cast("double")
    return rows.select(user.alias("user_idx"), item.alias("item_idx"), weight.alias("rating")) \
        .groupBy("user_idx", "item_idx").agg(F.sum("rating").alias("rating"))


def run(bench) -> None:
    users, items, rank, iterations = SIZES[bench.size]
    config = bench.config(f"als.rank={rank}", f"als.max_iter={iterations}", "als.num_blocks=8").als
    data = synthetic_interactions(bench.spark, users, items).persist(StorageLevel.MEMORY_AND_DISK)
    rows = data.count()
    shape = {"users": users, "items": items, "rank": rank}

    with bench.stage("als.train", interactions=rows, iterations=iterations, **shape):
        model = fit(data, config, Params(rank, config.reg_param, config.alpha, iterations)).ranking
        model.userFactors.count()
    factors = collect_item_factors(model.itemFactors)
    warmup = model.userFactors.limit(WARMUP_USERS)
    recommend_all(warmup, factors, TOP, block_size=config.block_size).write.format("noop").mode("overwrite").save()
    model.recommendForUserSubset(warmup.withColumnRenamed("id", "user_idx"), TOP).write.format("noop").mode("overwrite").save()
    with bench.stage("als.topn_fast", top=TOP, **shape):
        fast = recommend_all(model.userFactors, factors, TOP, block_size=config.block_size)
        fast.write.format("noop").mode("overwrite").save()
    fast_seconds = bench.records[-1]["seconds"]
    with bench.stage("als.topn_mllib_recommendForAllUsers", top=TOP, **shape):
        recommendations_to_long(model.recommendForAllUsers(TOP)).write.format("noop").mode("overwrite").save()
    bench.records[-1]["speedup_fast_vs_mllib"] = round(bench.records[-1]["seconds"] / max(fast_seconds, 1e-9), 1)
    with bench.stage("als.topn_parity", sample_users=PARITY_USERS, **shape) as extra:
        sample = model.userFactors.select(F.col("id").alias("user_idx")).orderBy(F.rand(7)).limit(PARITY_USERS)
        mllib = recommendations_to_long(model.recommendForUserSubset(sample, TOP))
        ours = recommend_all(model.userFactors.join(sample.withColumnRenamed("user_idx", "id"), "id"), factors, TOP,
                             block_size=config.block_size)
        joined = mllib.alias("m").join(ours.alias("o"), ["user_idx", "rank"], "full")
        row = joined.agg(F.avg((F.col("m.item_idx") == F.col("o.item_idx")).cast("double")).alias("same_item"),
                         F.max(F.abs(F.col("m.score") - F.col("o.score"))).alias("max_score_gap"),
                         F.count(F.lit(1)).alias("rows")).first()
        extra.update(same_item_share=round(row["same_item"], 4), max_score_gap=float(f"{row['max_score_gap']:.2g}"),
                     rows=row["rows"])
    bench_item_cf(bench, data, config, rows, shape)
    bench_fold_in(bench, data, config, Params(rank, config.reg_param, config.alpha, iterations), shape)
    data.unpersist()


def bench_item_cf(bench, data, config, rows: int, shape: dict) -> None:
    """Stages itemcf.neighbours and itemcf.topn (see the module docstring)."""
    per_user = {"interactions": rows, "neighbours": config.item_cf_neighbours, **shape}
    with bench.stage("itemcf.neighbours", **per_user):
        neighbours = item_neighbours(data, config.item_cf_neighbours, config.item_cf_shrinkage,
                                     config.item_cf_max_user_items).persist(StorageLevel.MEMORY_AND_DISK)
        neighbours.count()
    with bench.stage("itemcf.topn", top=TOP, **per_user):
        item_cf_recommend(data.select("user_idx"), data, neighbours, TOP).write.format("noop").mode("overwrite").save()
    neighbours.unpersist()


def new_user_split(data, users: int):
    """(interactions of the users before the cut-off, known and held-out interactions of the new
    users: the first and second half of each one's items in a fixed hash order)."""
    first_new = int(users * (1 - NEW_USER_SHARE))
    by_user = Window.partitionBy("user_idx")
    new = data.where(F.col("user_idx") >= first_new) \
        .withColumn("_pos", F.row_number().over(by_user.orderBy(F.xxhash64("user_idx", "item_idx"), "item_idx"))) \
        .withColumn("_n", F.count(F.lit(1)).over(by_user))
    known = new.where(F.col("_pos") * 2 <= F.col("_n")).drop("_pos", "_n")
    held = new.where(F.col("_pos") * 2 > F.col("_n")).drop("_pos", "_n")
    return data.where(F.col("user_idx") < first_new), known, held


def bench_fold_in(bench, data, config, params: Params, shape: dict) -> None:
    """Stage als.fold_in (see the module docstring)."""
    before, known, held = (frame.persist(StorageLevel.MEMORY_AND_DISK) for frame in new_user_split(data, shape["users"]))
    catalog = data.select("item_idx").distinct().count()
    new_users = known.select("user_idx").distinct().count()
    items = collect_item_factors(fit(before, config, params).ranking.itemFactors)

    def scores(user_factors) -> dict[str, float]:
        recs = recommend_all(user_factors, items, TOP, known, config.block_size)
        return ranking_metrics(recs, held, TOP, catalog)

    with bench.stage("als.fold_in", new_users=new_users, **shape) as extra:
        start = time.perf_counter()
        folded = fold_in(known, items, params.reg_param, params.alpha).persist(StorageLevel.MEMORY_AND_DISK)
        folded.count()
        fold_seconds = time.perf_counter() - start
        start = time.perf_counter()
        retrain = fit(before.unionByName(known), config, params).ranking
        retrained = retrain.userFactors.join(known.select(F.col("user_idx").alias("id")).distinct(), "id") \
            .persist(StorageLevel.MEMORY_AND_DISK)
        retrained.count()
        retrain_seconds = time.perf_counter() - start
        folded_scores, retrained_scores = scores(folded), scores(retrained)
        extra.update(fold_in_seconds=round(fold_seconds, 2), retrain_seconds=round(retrain_seconds, 2),
                     fold_in_ndcg=round(folded_scores["ndcg_at_k"], 4), retrain_ndcg=round(retrained_scores["ndcg_at_k"], 4),
                     ndcg_ratio=round(folded_scores["ndcg_at_k"] / retrained_scores["ndcg_at_k"], 3),
                     fold_in_recall=round(folded_scores["recall_at_k"], 4),
                     retrain_recall=round(retrained_scores["recall_at_k"], 4))
    for frame in (before, known, held, folded, retrained):
        frame.unpersist()
