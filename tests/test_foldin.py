"""ALS fold-in (shopai_spark.recommend.foldin): a training user folded in with the final item
factors gets back MLlib's own user factors (MLlib's last half-iteration is the same solve), and a
user's system ignores items without factors and zero weights."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.recommendation import ALS

from shopai_spark.recommend.foldin import fold_in, solve_factors
from shopai_spark.recommend.topn import ItemFactors, collect_item_factors


def planted_feedback(users: int = 60, items: int = 40, seed: int = 3) -> list[tuple[int, int, float]]:
    """Two user groups, each buying mostly from its half of the catalogue, weights 1..4."""
    rng = np.random.default_rng(seed)
    rows = set()
    for user in range(users):
        half = user % 2
        for _ in range(8):
            item = int(rng.integers(0, items // 2)) + (half if rng.random() < 0.85 else 1 - half) * (items // 2)
            rows.add((user, item))
    return [(u, i, float(rng.integers(1, 5))) for u, i in sorted(rows)]


@pytest.mark.parametrize(("reg_param", "alpha"), [(0.1, 10.0), (1.0, 1.0)])
def test_folding_in_training_users_gives_back_the_models_factors(spark, reg_param, alpha):
    feedback = spark.createDataFrame(planted_feedback(), "user_idx INT, item_idx INT, rating DOUBLE")
    model = ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", implicitPrefs=True, rank=4,
                regParam=reg_param, alpha=alpha, maxIter=5, seed=1, numUserBlocks=2, numItemBlocks=2).fit(feedback)
    folded = fold_in(feedback, collect_item_factors(model.itemFactors), reg_param, alpha).toPandas()
    trained = model.userFactors.toPandas()
    assert len(folded) == len(trained) == 60
    merged = trained.merge(folded, on="id", suffixes=("_model", "_folded"))
    got = np.stack(merged["features_folded"].to_numpy())
    want = np.stack(merged["features_model"].to_numpy())
    assert np.abs(want).max() > 0.05
    np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())


def test_a_users_system_skips_unknown_items_and_zero_weights():
    items = ItemFactors(np.array([0, 2, 5]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32))
    gram = items.vectors.astype(np.float64).T @ items.vectors
    lists = [np.array([0, 7]), np.array([7]), np.array([2, 5]), np.array([0, 2])]
    weights = [np.array([2.0, 9.0]), np.array([1.0]), np.array([1.0, 0.0]), np.array([2.0, 0.0])]
    factors = solve_factors(lists, weights, items, gram, reg_param=0.5, alpha=3.0)
    # user 0 = item 0 alone (item 7 has no factors); user 3's zero weight on item 2 drops it
    np.testing.assert_array_equal(factors[0], factors[3])
    assert factors[0][0] > 0 and abs(factors[0][1]) < abs(factors[0][0])
    np.testing.assert_array_equal(factors[1], [0.0, 0.0])   # nothing known: scores nothing
    # user 2 = item 2 alone: by hand, (G + 3 y yᵀ + 0.5 I) x = 4 y
    y = np.array([0.0, 1.0])
    want = np.linalg.solve(gram + 3.0 * np.outer(y, y) + 0.5 * np.eye(2), 4.0 * y)
    np.testing.assert_allclose(factors[2], want, rtol=1e-6)
