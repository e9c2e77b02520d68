"""ALS fold-in: factors for users the model was not trained on, from the item factors alone.

Implicit ALS (Hu, Koren & Volinsky 2008, as MLlib solves it) gives a user the factors ``x`` that
solve one small linear system given the item factors ``Y`` (items x rank)::

    (YᵀY + Σ_i c_i y_i y_iᵀ + λ n I) x = Σ_i (1 + c_i) y_i

over the user's items ``i`` with weight ``r_i > 0``, ``c_i = alpha r_i``, ``n`` their number and
``λ`` = ``reg_param``. MLlib's last half-iteration is exactly this solve for every training user,
so folding in a training user with the final item factors gives back the model's own user factors
(``tests/test_foldin.py``). A new user's interactions thus get the factors a retrain would give
them if the items did not move: no refit of the catalogue, one ``rank x rank`` solve per user.

Users are solved in batches inside ``mapInPandas`` (numpy ``linalg.solve`` on a stack of systems);
the item factors travel in the function's closure as in :mod:`~shopai_spark.recommend.topn`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.recommend.topn import ItemFactors

FACTORS_SCHEMA = "id INT, features ARRAY<FLOAT>"


def solve_factors(item_lists: list[np.ndarray], weight_lists: list[np.ndarray], items: ItemFactors,
                  gram: np.ndarray, reg_param: float, alpha: float) -> np.ndarray:
    """One user per list pair: item ids and their weights (> 0) → users x rank factors (float32).

    Items without factors are ignored; a user left with none gets zeros (scores nothing)."""
    rank = items.vectors.shape[1]
    factors = np.zeros((len(item_lists), rank), np.float64)
    systems, targets, solved = [], [], []
    for user, (ids, weights) in enumerate(zip(item_lists, weight_lists, strict=True)):
        pos = items.positions(np.asarray(ids, np.int64))
        keep = (pos >= 0) & (np.asarray(weights) > 0)
        if not keep.any():
            continue
        y = items.vectors[pos[keep]].astype(np.float64)
        c = alpha * np.asarray(weights, np.float64)[keep]
        systems.append(gram + (y.T * c) @ y + reg_param * keep.sum() * np.eye(rank))
        targets.append((1.0 + c) @ y)
        solved.append(user)
    if solved:
        factors[solved] = np.linalg.solve(np.stack(systems), np.stack(targets)[..., None])[..., 0]
    return factors.astype(np.float32)


def fold_in(feedback: DataFrame, items: ItemFactors, reg_param: float, alpha: float) -> DataFrame:
    """Implicit feedback (user_idx, item_idx, rating = weight > 0) of users to fold in → id, features
    (one row per user, as an ALS model's ``userFactors``) solved from ``items`` with the model's
    ``reg_param`` and ``alpha``. Feed it to :func:`~shopai_spark.recommend.topn.recommend_all`."""
    gram = items.vectors.astype(np.float64).T @ items.vectors.astype(np.float64)
    rows = feedback.groupBy("user_idx").agg(F.collect_list(F.struct("item_idx", "rating")).alias("rows"))
    lists = rows.select("user_idx", F.col("rows.item_idx").alias("items"),
                        F.col("rows.rating").cast("array<double>").alias("weights"))

    def solve(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            factors = solve_factors([np.asarray(v, np.int64) for v in batch["items"]],
                                    [np.asarray(v, np.float64) for v in batch["weights"]],
                                    items, gram, reg_param, alpha)
            yield pd.DataFrame({"id": batch["user_idx"].astype(np.int32), "features": list(factors.tolist())})

    return lists.mapInPandas(solve, FACTORS_SCHEMA)
