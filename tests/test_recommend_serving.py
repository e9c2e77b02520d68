"""``als.serving=fold_in`` end to end through the job's entry point: a retrain on the planted taste
groups of test_recommend_job, then customers arrive (new ones in both groups, a cold customer of
the retrain who now has events, one who touched only an item the model does not know, a new
orders-only customer) and a fold-in run serves exactly them, from the retrain's model.
"""

from __future__ import annotations

import datetime as dt

import mlflow
import pandas as pd
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import load_config, main
from shopai_spark.recommend.job import ITEM_INDEX, SIMILAR_ITEMS, USER_INDEX, USER_RECOMMENDATIONS
from shopai_spark.recommend.serving import ITEM_FACTORS
from shopai_spark.runs import JOB_RUNS
from shopai_spark.schemas import EVENTS, ORDERS
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides, cli_args
from tests.test_recommend_job import COLD_USER, FAST, GROUPS, START, USERS, planted_events, write_silver

pytestmark = pytest.mark.e2e

NEW = [f"n{i}" for i in range(6)]          # new customers: n0, n2, n4 in group a; n1, n3, n5 in group b
UNKNOWN_ITEM_ONLY = "n-unknown"            # touched only a sku that did not exist at the retrain
NEW_COLD = "n-cold"                        # a new orders-only customer (no events)
OUTPUTS = (USER_RECOMMENDATIONS, USER_INDEX, ITEM_INDEX, SIMILAR_ITEMS, ITEM_FACTORS)


def group_of(user: str) -> str:
    return "a" if user == COLD_USER else GROUPS[int(user[1:]) % 2]


def arrivals() -> pd.DataFrame:
    """Events after the retrain: 4 views and 2 purchases of own-group skus per new customer, the
    retrain's cold customer buying group a skus, one customer who only viewed the new sku c0."""
    at = START + dt.timedelta(days=70)
    rows = []
    for user in [*NEW, COLD_USER]:
        group = group_of(user)
        skus = [f"{group}{(int(user[1:]) if user in NEW else 0) + j}" for j in range(4)]
        rows += [(user, f"s-{user}", sku, "view", at, 10.0) for sku in skus]
        rows += [(user, f"s-{user}", sku, "purchase", at, 10.0) for sku in skus[:2]]
    rows.append((UNKNOWN_ITEM_ONLY, "s-x", "c0", "view", at, 10.0))
    return pd.DataFrame(rows, columns=["user_id", "session_id", "sku", "event_type", "event_ts", "price"])


@pytest.fixture(scope="module")
def folded(spark, mlflow_store, tmp_path_factory):
    """A retrain, then the arrivals, then a fold-in run; the tables before and after."""
    tmp_path = tmp_path_factory.mktemp("als_fold_in")
    settings = [*FAST, "als.registered_model=null"]
    args = cli_args(tmp_path, mlflow_store, *settings)
    lake = Lakehouse(spark, load_config(LOCAL_CONF, [*base_overrides(tmp_path, mlflow_store), *settings]).lakehouse)
    write_silver(spark, lake, planted_events())
    assert main("als", args) == 0
    before = {ref: lake.read(ref).toPandas() for ref in (USER_RECOMMENDATIONS, USER_INDEX)}
    versions = {ref: lake.version(ref) for ref in OUTPUTS}
    lake.append(spark.createDataFrame(arrivals(), EVENTS.ddl.replace(" NOT NULL", "")), EVENTS.ref)
    lake.append(spark.createDataFrame([("o9", NEW_COLD, START + dt.timedelta(days=70), "FR")],
                                      ORDERS.ddl.replace(" NOT NULL", "")), ORDERS.ref)
    fold_in = [*args, "--set", "als.serving=fold_in"]
    assert main("als", fold_in) == 0
    after = {ref: lake.read(ref).toPandas() for ref in (USER_RECOMMENDATIONS, USER_INDEX)}
    return lake, before, after, versions, fold_in


def test_arrived_customers_get_folded_in_lists_and_nobody_else_changes(folded):
    lake, before, after, versions, _ = folded
    old, recs = before[USER_RECOMMENDATIONS], after[USER_RECOMMENDATIONS]
    served = {*NEW, COLD_USER, UNKNOWN_ITEM_ONLY, NEW_COLD}
    # every other customer's rows are the retrain's, run_id and generated_at included
    kept = recs[~recs["user_id"].isin(served)].sort_values(["user_id", "rank"]).reset_index(drop=True)
    expected = old[~old["user_id"].isin(served)].sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[expected.columns], expected)
    assert not expected["folded_in"].any() and len(expected) == USERS * 5
    # the served customers: one list of top_n each, written by the fold-in run
    mine = recs[recs["user_id"].isin(served)]
    assert set(mine["user_id"]) == served and mine.groupby("user_id").size().eq(5).all()
    assert mine["run_id"].nunique() == 1 and mine["run_id"].iloc[0] != old["run_id"].iloc[0]
    # folded in: the customers with feedback on the model's items, ranked by the model in their own group
    warm = mine[mine["folded_in"]]
    assert set(warm["user_id"]) == {*NEW, COLD_USER} and not warm["is_fallback"].any()
    top3 = warm[warm["rank"] <= 3]
    assert (top3["sku"].str[0] == top3["user_id"].map(group_of)).mean() >= 0.9
    bought = set(map(tuple, arrivals().query("event_type == 'purchase'")[["user_id", "sku"]].to_numpy()))
    assert not bought & set(map(tuple, warm[["user_id", "sku"]].to_numpy()))
    # without feedback on the model's items: the flagged popularity fallback, never a model list
    cold = mine[mine["user_id"].isin([UNKNOWN_ITEM_ONLY, NEW_COLD])]
    assert cold["is_fallback"].all() and not cold["folded_in"].any()
    # the folded-in customers join the user index with new numbers; nothing else there changes
    index = after[USER_INDEX]
    pd.testing.assert_frame_equal(index[index["user_idx"] < USERS].sort_values("user_idx").reset_index(drop=True),
                                  before[USER_INDEX].sort_values("user_idx").reset_index(drop=True))
    added = index[index["user_idx"] >= USERS]
    assert set(added["user_id"]) == {*NEW, COLD_USER}
    assert sorted(added["user_idx"]) == list(range(USERS, USERS + len(NEW) + 1))
    # the model's tables are the retrain's
    for ref in (ITEM_INDEX, SIMILAR_ITEMS, ITEM_FACTORS):
        assert lake.version(ref) == versions[ref], ref


def test_fold_in_run_logs_whom_it_served_and_from_which_model(folded):
    lake, before, after, _, _ = folded
    fold_in_run = after[USER_RECOMMENDATIONS].query("folded_in")["run_id"].iloc[0]
    run = mlflow.tracking.MlflowClient().get_run(fold_in_run).data
    assert run.metrics["fold_in_users"] == len(NEW) + 1
    assert run.metrics["fold_in_fallback_users"] == 2
    assert run.metrics["fold_in_skipped_interactions"] == 1   # the view of c0
    assert run.params["als.fold_in.model_run_id"] == before[USER_RECOMMENDATIONS]["run_id"].iloc[0]


def test_fold_in_again_on_the_same_input_writes_nothing(folded, spark):
    lake, _, _, _, fold_in = folded
    versions = {ref: lake.version(ref) for ref in OUTPUTS}
    assert main("als", [*fold_in, "--set", "lakehouse.skip_unchanged_runs=false"]) == 0
    assert {ref: lake.version(ref) for ref in OUTPUTS} == versions
    assert lake.read(JOB_RUNS).where((F.col("job") == "als") & (F.col("event") == "skipped")).count() == 1


def test_fold_in_before_any_retrain_says_what_to_run(spark, mlflow_store, tmp_path, capsys):
    args = cli_args(tmp_path, mlflow_store, *FAST, "als.serving=fold_in")
    lake = Lakehouse(spark, load_config(LOCAL_CONF, base_overrides(tmp_path, mlflow_store)).lakehouse)
    write_silver(spark, lake, planted_events())
    assert main("als", args) == 3
    assert "run jobs/als.py with als.serving=retrain first" in capsys.readouterr().err
    assert not lake.exists(USER_RECOMMENDATIONS)
