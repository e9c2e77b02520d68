"""Pure pieces of the segmentation: assignment, ARI, k rule, names, stable ids."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from shopai_spark.segment.metrics import adjusted_rand_index, adjusted_rand_index_df
from shopai_spark.segment.profiles import min_cost_assignment, name_segment, stable_ids, unique_names
from shopai_spark.segment.select_k import choose_k

FEATURES = ["recency_days", "frequency", "monetary", "tenure_days"]


def brute_force(cost: np.ndarray) -> float:
    n_rows, n_cols = cost.shape
    return min(sum(cost[i, p[i]] for i in range(n_rows)) for p in itertools.permutations(range(n_cols), n_rows))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 6), (6, 6), (7, 7)])
def test_min_cost_assignment_is_exact(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.random(shape)
        cols = min_cost_assignment(cost)
        assert len(set(cols)) == shape[0]
        assert sum(cost[i, c] for i, c in enumerate(cols)) == pytest.approx(brute_force(cost))


def test_min_cost_assignment_rejects_more_rows_than_columns():
    with pytest.raises(ValueError, match="rows <= columns"):
        min_cost_assignment(np.zeros((3, 2)))


def test_ari_matches_sklearn(spark):
    rng = np.random.default_rng(7)
    for n, ka, kb in [(50, 3, 3), (200, 5, 4), (30, 2, 6)]:
        a, b = rng.integers(0, ka, n), rng.integers(0, kb, n)
        b[: n // 2] = a[: n // 2]  # partly agreeing
        assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 9, 9]) == pytest.approx(1.0)
    df = spark.createDataFrame(pd.DataFrame({"x": a.astype(int), "y": b.astype(int)}))
    assert adjusted_rand_index_df(df, "x", "y") == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_choose_k_rule():
    table = pd.DataFrame({"k": [2, 3, 4, 5], "cost": [9.0, 5, 3, 2.5], "silhouette": [0.40, 0.55, 0.545, 0.30]})
    assert choose_k(table, 0.0) == 3
    assert choose_k(table, 0.01) == 3
    assert choose_k(table, 0.2) == 2


@pytest.mark.parametrize("center, name", [
    ([-1.0, 1.0, 1.0, 0.5], "Champions"),
    ([-0.5, -0.8, -0.6, -1.2], "New"),
    ([-0.2, 0.2, 0.1, 0.5], "Loyal"),
    ([-0.2, -0.5, -0.5, 0.5], "Promising"),
    ([1.0, 0.8, 0.9, 0.8], "At risk"),
    ([1.2, -1.0, -1.0, 0.5], "Hibernating"),
    ([0.2, -1.0, -1.0, 0.5], "Needs attention"),
])
def test_naming_rule(center, name):
    assert name_segment(center, FEATURES) == name


def test_unique_names_suffix_in_id_order():
    assert unique_names({3: "Loyal", 1: "Loyal", 2: "New"}) == {1: "Loyal", 2: "New", 3: "Loyal 2"}


def test_stable_ids_survive_label_permutation():
    rng = np.random.default_rng(3)
    old = rng.normal(size=(5, 4)) * 3
    previous = {10 + i: old[i] for i in range(5)}
    perm = [3, 0, 4, 1, 2]
    new = old[perm] + rng.normal(scale=0.05, size=(5, 4))
    assert stable_ids(new, previous, monetary=[0] * 5) == [10 + p for p in perm]
    # k grew: the extra cluster gets a fresh id above the old ones
    grown = np.vstack([new, [[50.0, 50, 50, 50]]])
    assert stable_ids(grown, previous, monetary=[0] * 6) == [10 + p for p in perm] + [15]
    # k shrank: the remaining clusters keep their nearest old ids
    assert stable_ids(new[:3], previous, monetary=[0] * 3) == [10 + p for p in perm[:3]]
    # first run: ids 1..k by decreasing monetary
    assert stable_ids(new[:3], None, monetary=[5.0, 9.0, 1.0]) == [2, 1, 3]


def test_lloyd_pass_refine_and_model_match_numpy(spark):
    """One Lloyd pass over packed blocks equals the numpy step; refine stops at the fixed point with
    the cost of the centres it returns; the MLlib model holds exactly those centres."""
    from pyspark.ml.linalg import Vectors

    from shopai_spark.segment import model as km

    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(c, 0.3, size=(200, 2)) for c in ((0, 0), (4, 0), (0, 4))])
    frame = spark.createDataFrame([(Vectors.dense(row.tolist()),) for row in x], ["features"]).repartition(3)
    points = km.packed_points(frame, 2).cache()
    start = x[[0, 200, 400]] + 0.5
    cost, moved = km.lloyd_pass(points, start)
    nearest = ((x[:, None, :] - start[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    assert cost == pytest.approx(((x - start[nearest]) ** 2).sum(), rel=1e-12)
    np.testing.assert_allclose(moved, [x[nearest == c].mean(axis=0) for c in range(3)], rtol=1e-12)

    refined = km.refine(points, start, max_iter=50, tol=1e-12)
    assert refined.converged and 1 < refined.iterations < 50
    final = ((x[:, None, :] - refined.centers[None, :, :]) ** 2).sum(axis=2)
    assert refined.cost == pytest.approx(final.min(axis=1).sum(), rel=1e-12)
    stopped = km.refine(points, start, max_iter=1, tol=0.0)
    assert not stopped.converged and stopped.iterations == 1 and stopped.cost == pytest.approx(cost)

    fitted = km.kmeans_model(spark, refined.centers)
    got = np.array(sorted(map(tuple, fitted.clusterCenters())))
    np.testing.assert_array_equal(got, np.array(sorted(map(tuple, refined.centers))))
    points.unpersist()
