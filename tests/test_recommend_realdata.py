"""MovieLens 100k (../shared/data/ml-100k, the ua.base / ua.test split) through the ALS job.

Explicit mode with the default model config must reach test RMSE <= 0.95; implicit mode (ratings
>= 4 as positives) must beat the popularity baseline on NDCG@10 by at least 30%.
"""

from __future__ import annotations

import pytest

from shopai_spark.app import run_job
from tests.conftest import shared_data

pytestmark = pytest.mark.realdata


def movielens_config(make_config, mode: str):
    base, test = shared_data("ml-100k/ua.base"), shared_data("ml-100k/ua.test")
    return make_config("als.source=udata", f"als.ratings_path={base}", f"als.test_path={test}", f"als.mode={mode}",
                       "als.refit_full=false", "als.registered_model=null", "als.similar_m=5")


def test_movielens_explicit_rmse(spark, make_config):
    summary = run_job("als", movielens_config(make_config, "explicit"), spark)
    assert summary.tables["gold.als_user_index"] == 943
    assert summary.metrics["test_rmse"] <= 0.95
    assert summary.metrics["test_rmse"] < summary.metrics["popularity_rmse"]  # beats item-mean predictions


def test_movielens_implicit_beats_popularity(spark, make_config):
    summary = run_job("als", movielens_config(make_config, "implicit"), spark)
    assert summary.metrics["test_ndcg_at_k"] >= 1.3 * summary.metrics["popularity_ndcg_at_k"]
