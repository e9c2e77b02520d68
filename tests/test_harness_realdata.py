"""MovieLens 100k (../shared/data/ml-100k, ua.base / ua.test) through the recommender comparison: the
four recommenders in one MLflow run, with finite metrics on the same evaluated users."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from shopai_spark.app import run_job
from shopai_spark.harness import RECOMMENDERS, TABLE_METRICS
from tests.conftest import shared_data

pytestmark = [pytest.mark.realdata, pytest.mark.heavy]

# each user's ua.base ratings are one basket: a support high enough to keep the FP-Growth search small
RULES = ["fpgrowth.max_basket_size=1000", "fpgrowth.min_support=0.2", "fpgrowth.min_confidence=0.5"]


def test_movielens_four_recommenders_in_one_run(spark, make_config, mlflow_store):
    base, test = shared_data("ml-100k/ua.base"), shared_data("ml-100k/ua.test")
    config = make_config("als.source=udata", f"als.ratings_path={base}", f"als.test_path={test}", *RULES)
    summary = run_job("evaluate_recommenders", config, spark)
    metrics = MlflowClient(mlflow_store["tracking_uri"]).get_run(summary.run_id).data.metrics
    for name in RECOMMENDERS:
        for metric in TABLE_METRICS:
            assert math.isfinite(metrics[f"{name}_{metric}"]), f"{name}_{metric}"
        assert metrics[f"{name}_users_evaluated"] == metrics["popularity_users_evaluated"] > 900
    assert metrics["popularity_served_share"] == 1.0 and metrics["rules"] > 0
    # the README's table: the collaborative models ahead of popularity on MovieLens
    assert metrics["als_ndcg_at_k"] > metrics["item_cf_ndcg_at_k"] > metrics["popularity_ndcg_at_k"]
