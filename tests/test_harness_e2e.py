"""The recommender comparison through ``jobs/evaluate_recommenders.py``'s entry point on the generated
shop: the four recommenders in one MLflow run, the table and chart artifacts, and the planted
structure found by ALS and item-based CF (both beat popularity on NDCG@10). ALS is tuned as a user
would: a small grid chosen on a validation split carved out of the training rows, never on the
held-out baskets (measured: rank 20, alpha 1 chosen; NDCG@10 ALS 0.1499, item-CF 0.1312,
popularity 0.1055)."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from shopai_spark.app import main
from shopai_spark.harness import RECOMMENDERS

from .conftest import cli_args

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]

GRID = ["als.registered_model=null", "als.grid.alpha=[1,10]", "als.grid.rank=[10,20]"]
METRICS = ("ndcg_at_k", "precision_at_k", "recall_at_k", "map_at_k", "hit_rate", "coverage", "served_share")


def harness_run(mlflow_store, experiment: str):
    client = MlflowClient(mlflow_store["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              "tags.job = 'evaluate_recommenders'")
    assert len(runs) == 1
    return client, runs[0]


def test_harness_on_the_generated_shop(tmp_path, mlflow_store, shop_lakehouse, capsys):
    assert main("evaluate_recommenders", cli_args(tmp_path, mlflow_store, *GRID)) == 0
    out = capsys.readouterr().out
    assert "== evaluate_recommenders" in out and "held out: the last basket of each customer" in out
    client, run = harness_run(mlflow_store, f"test-{tmp_path.name}")
    metrics = run.data.metrics
    for name in RECOMMENDERS:
        for metric in METRICS:
            assert math.isfinite(metrics[f"{name}_{metric}"]), f"{name}_{metric}"
        # the same evaluated users for every recommender
        assert metrics[f"{name}_users_evaluated"] == metrics["popularity_users_evaluated"] > 100
    assert metrics["popularity_served_share"] == 1.0 and 0 < metrics["rules_served_share"] < 1
    assert run.data.params["als.best.rank"] in ("10", "20") and run.data.params["harness.evaluate.session_minutes"] == "60.0"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"recommender_comparison.csv",
                                                                         "recommender_comparison.png"}
    print({name: round(metrics[f"{name}_ndcg_at_k"], 4) for name in RECOMMENDERS})
    assert metrics["item_cf_ndcg_at_k"] > metrics["popularity_ndcg_at_k"]
    assert metrics["als_ndcg_at_k"] > metrics["popularity_ndcg_at_k"]
