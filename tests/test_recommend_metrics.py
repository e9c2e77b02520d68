"""Ranking/error metrics, fast top-N, similar items and the popularity baseline against plain
Python / numpy references and against MLlib's recommendForAllUsers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.ml.recommendation import ALS

from shopai_spark.recommend.baseline import item_mean_predictions, popularity_recommend
from shopai_spark.recommend.metrics import error_metrics, ranking_metrics
from shopai_spark.recommend.topn import (
    collect_item_factors,
    recommend_all,
    recommendations_to_long,
    similar_items,
    top_k_rows,
)

K = 5


def python_ranking(recs: dict[int, list[int]], truth: dict[int, set[int]], k: int, catalog: int) -> dict:
    """Plain Python definitions (see shopai_spark/recommend/metrics.py)."""
    p, r, n, a, h, s = [], [], [], [], [], []
    for user, relevant in truth.items():
        top = recs.get(user, [])[:k]
        hits = [i for i, item in enumerate(top) if item in relevant]
        ideal = min(len(relevant), k)
        p.append(len(hits) / k)
        r.append(len(hits) / len(relevant))
        n.append(sum(1 / math.log2(i + 2) for i in hits) / sum(1 / math.log2(i + 2) for i in range(ideal)))
        a.append(sum((j + 1) / (i + 1) for j, i in enumerate(hits)) / ideal)
        h.append(1.0 if hits else 0.0)
        s.append(1.0 if top else 0.0)
    covered = {item for user in truth for item in recs.get(user, [])[:k]}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"precision_at_k": mean(p), "recall_at_k": mean(r), "ndcg_at_k": mean(n), "map_at_k": mean(a),
            "hit_rate": mean(h), "served_share": mean(s), "coverage": len(covered) / catalog, "users_evaluated": float(len(truth))}


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    recs = {u: [int(x) for x in rng.choice(30, size=int(rng.integers(1, 9)), replace=False)] for u in range(25)}
    truth = {u: {int(x) for x in rng.choice(30, size=int(rng.integers(1, 7)), replace=False)} for u in range(5, 35)}
    return recs, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_ranking_metrics_match_python(spark, seed):
    recs, truth = random_case(seed)
    recs_df = spark.createDataFrame([(u, i + 1, item) for u, items in recs.items() for i, item in enumerate(items)],
                                    "user_idx INT, rank INT, item_idx INT")
    truth_df = spark.createDataFrame([(u, item) for u, items in truth.items() for item in items],
                                     "user_idx INT, item_idx INT")
    got = ranking_metrics(recs_df, truth_df, K, catalog_size=30)
    want = python_ranking(recs, truth, K, 30)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0 < want["ndcg_at_k"] < 1 and 0 < want["map_at_k"] < 1  # a case that exercises hits and misses


def test_error_metrics_match_numpy(spark):
    rng = np.random.default_rng(3)
    label, pred = rng.uniform(1, 5, 50), rng.uniform(1, 5, 50)
    frame = spark.createDataFrame([(float(a), float(b)) for a, b in zip(label, pred, strict=True)]
                                  + [(3.0, float("nan"))], "rating DOUBLE, prediction DOUBLE")
    got = error_metrics(frame)
    assert got["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - label) ** 2))))
    assert got["mae"] == pytest.approx(float(np.mean(np.abs(pred - label))))
    assert got["predictions"] == 50


def test_item_mean_predictions(spark):
    train = spark.createDataFrame([(0, 1, 4.0), (1, 1, 2.0), (0, 2, 5.0)], "user_idx INT, item_idx INT, rating DOUBLE")
    test = spark.createDataFrame([(2, 1, 1.0), (2, 9, 1.0)], "user_idx INT, item_idx INT, rating DOUBLE")
    got = {r["item_idx"]: r["prediction"] for r in item_mean_predictions(train, test).collect()}
    assert got == {1: 3.0, 9: pytest.approx(11 / 3)}


def test_top_k_rows_matches_argsort():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 40)).astype(np.float32)
    positions, values = top_k_rows(scores, 6)
    want = np.argsort(-scores, axis=1, kind="stable")[:, :6]
    np.testing.assert_array_equal(positions, want)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, want, 1))
    assert top_k_rows(scores, 99)[0].shape == (7, 40)


@pytest.mark.parametrize("ties", [False, True])
def test_top_k_rows_with_ties_and_excluded_items_matches_a_stable_sort(ties):
    """Wide rows take the chunk-maximum shortcut; ties keep the lower position; -inf only when needed."""
    rng = np.random.default_rng(1)
    for k, width in [(3, 500), (10, 2000), (7, 60), (5, 5)]:
        scores = (rng.integers(0, 4, size=(20, width)) if ties else rng.normal(size=(20, width))).astype(np.float32)
        scores[rng.random(scores.shape) < 0.4] = -np.inf
        scores[0, :-2] = -np.inf   # a row with fewer than k finite scores
        positions, values = top_k_rows(scores, k)
        want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(positions, want)
        np.testing.assert_array_equal(values, np.take_along_axis(scores, want, 1))


@pytest.fixture(scope="module")
def model(spark):
    rng = np.random.default_rng(5)
    rows = [(int(u), int(i), float(rng.integers(1, 6))) for u in range(30) for i in rng.choice(25, 8, replace=False)]
    ratings = spark.createDataFrame(rows, "user_idx INT, item_idx INT, rating DOUBLE")
    als = ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", rank=3, maxIter=3, seed=1,
              numUserBlocks=2, numItemBlocks=2)
    return als.fit(ratings), ratings


def test_fast_top_n_equals_recommend_for_all_users(spark, model):
    als_model, _ = model
    items = collect_item_factors(als_model.itemFactors)
    fast = recommend_all(als_model.userFactors, items, K, block_size=7).orderBy("user_idx", "rank")
    mllib = recommendations_to_long(als_model.recommendForAllUsers(K)).orderBy("user_idx", "rank")
    assert fast.count() == 30 * K
    assert_approx_df_equality(fast, mllib.select(*fast.columns), precision=1e-4, ignore_nullable=True)


def test_exclusion_similar_items_and_popularity_match_numpy(spark, model):
    als_model, ratings = model
    items = collect_item_factors(als_model.itemFactors)
    users = als_model.userFactors.toPandas().sort_values("id")
    scores = np.stack(users["features"].to_numpy()).astype(np.float32) @ items.vectors.T
    seen = ratings.toPandas()
    for u, i in seen[["user_idx", "item_idx"]].to_numpy():
        scores[int(u), items.positions(np.array([i]))[0]] = -np.inf
    want = {(int(u), int(items.ids[p])) for u in range(30) for p in np.argsort(-scores[u], kind="stable")[:K]}
    got = recommend_all(als_model.userFactors, items, K, ratings.select("user_idx", "item_idx"), block_size=4)
    assert {(r["user_idx"], r["item_idx"]) for r in got.collect()} == want

    unit = items.vectors / np.linalg.norm(items.vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    similar = similar_items(items, spark, 3, block_size=5).toPandas()
    for item, group in similar.groupby("item_idx"):
        row = int(items.positions(np.array([item]))[0])
        best = np.argsort(-cosine[row], kind="stable")[:3]
        assert group.sort_values("rank")["similar_idx"].tolist() == items.ids[best].tolist()
        np.testing.assert_allclose(group.sort_values("rank")["score"], cosine[row, best], rtol=1e-5)

    popular = seen.groupby("item_idx")["user_idx"].nunique()
    order = sorted(popular.index, key=lambda i: (-popular[i], i))
    got = popularity_recommend(spark.createDataFrame([(0,), (1,)], "user_idx INT"), ratings, K,
                               ratings.select("user_idx", "item_idx")).toPandas()
    for u in (0, 1):
        bought = set(seen.loc[seen.user_idx == u, "item_idx"])
        assert got[got.user_idx == u].sort_values("rank")["item_idx"].tolist() == [
            i for i in order if i not in bought][:K]
    assert got.groupby("user_idx")["score"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_similar_items_without_arrow(spark, model):
    """A cluster session may run with Arrow off: the driver-side item table must still convert."""
    items = collect_item_factors(model[0].itemFactors)
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "false")
    try:
        with_arrow_off = similar_items(items, spark, 3).orderBy("item_idx", "rank")
        assert with_arrow_off.count() == 3 * len(items.ids)
    finally:
        spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    assert_approx_df_equality(with_arrow_off, similar_items(items, spark, 3).orderBy("item_idx", "rank"), precision=1e-6)
