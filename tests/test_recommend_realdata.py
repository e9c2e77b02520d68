"""MovieLens 100k (../shared/data/ml-100k, the ua.base / ua.test split) through the ALS job.

Explicit mode with the default model config must reach test RMSE <= 0.95, on the same test rows
as the item-mean baseline, and serve top-10 lists that beat popularity; implicit mode (trained on
every rating, relevant = rating >= 4) must beat popularity on NDCG@10 by at least 30%. No served
list holds a movie the user rated, whatever the rating.
"""

from __future__ import annotations

import pytest

from shopai_spark.app import run_job
from shopai_spark.recommend.interactions import read_udata
from shopai_spark.recommend.job import USER_RECOMMENDATIONS
from shopai_spark.tables import Lakehouse
from tests.conftest import shared_data

pytestmark = [pytest.mark.realdata, pytest.mark.heavy]


def movielens_config(make_config, mode: str):
    base, test = shared_data("ml-100k/ua.base"), shared_data("ml-100k/ua.test")
    return make_config("als.source=udata", f"als.ratings_path={base}", f"als.test_path={test}", f"als.mode={mode}",
                       "als.refit_full=false", "als.registered_model=null", "als.similar_m=5")


def assert_no_rated_movie_is_served(spark, config) -> None:
    rated = read_udata(spark, config.als.ratings_path).select("user_id", "item_id")
    served = Lakehouse(spark, config.lakehouse).read(USER_RECOMMENDATIONS).select("user_id", "sku")
    assert served.count() == 943 * config.als.top_n
    assert served.withColumnRenamed("sku", "item_id").join(rated, ["user_id", "item_id"]).isEmpty()


def test_movielens_explicit_rmse_and_served_lists(spark, make_config):
    config = movielens_config(make_config, "explicit")
    summary = run_job("als", config, spark)
    assert summary.tables["gold.als_user_index"] == 943
    assert summary.metrics["test_rmse"] <= 0.95
    assert summary.metrics["test_rmse"] < summary.metrics["popularity_rmse"]  # beats item-mean predictions
    assert summary.metrics["served_popularity"] == 0
    assert summary.metrics["test_ndcg_at_k"] > summary.metrics["popularity_ndcg_at_k"]
    assert_no_rated_movie_is_served(spark, config)


def test_movielens_implicit_beats_popularity(spark, make_config):
    config = movielens_config(make_config, "implicit")
    summary = run_job("als", config, spark)
    assert summary.metrics["test_ndcg_at_k"] >= 1.3 * summary.metrics["popularity_ndcg_at_k"]
    assert_no_rated_movie_is_served(spark, config)
