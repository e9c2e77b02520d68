"""ALS job end to end on tiny synthetic silver tables with two planted taste groups.

Users of group a only touch skus a0..a9, users of group b only b0..b9, so a working model recommends
(and finds similar) items of the user's own group; the checks below fail for a random model.
"""

from __future__ import annotations

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import load_config, run_job
from shopai_spark.quality import QUARANTINE
from shopai_spark.recommend.job import (
    ITEM_INDEX,
    SIMILAR_ITEMS,
    USER_INDEX,
    USER_RECOMMENDATIONS,
    EmptyInputError,
)
from shopai_spark.schemas import EVENTS, ORDERS
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 1, 1)
GROUPS = ("a", "b")
USERS = 40
COLD_USER = "cold-1"
FAST = ("als.rank=4", "als.max_iter=6", "als.num_blocks=2", "als.top_n=5", "als.similar_m=3", "als.k=5",
        "als.checkpoint_interval=2", "als.serve_from=[als]")   # these tests read ALS's own lists


def planted_events(seed: int = 0) -> pd.DataFrame:
    """Per user: 6 views, 3 carts, 2 purchases of skus from the user's group; times over 60 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(USERS):
        group = GROUPS[u % 2]
        skus = [f"{group}{i}" for i in rng.choice(10, size=6, replace=False)]
        for j, sku in enumerate(skus):
            ts = START + dt.timedelta(days=int(rng.integers(0, 60)), minutes=j)
            rows.append((f"u{u:02d}", f"s{u}", sku, "view", ts, 10.0))
            if j < 3:
                rows.append((f"u{u:02d}", f"s{u}", sku, "add_to_cart", ts + dt.timedelta(minutes=1), 10.0))
            if j < 2:
                rows.append((f"u{u:02d}", f"s{u}", sku, "purchase", ts + dt.timedelta(minutes=2), 10.0))
    return pd.DataFrame(rows, columns=["user_id", "session_id", "sku", "event_type", "event_ts", "price"])


BAD_EVENTS = [("", "s", "a1", "view", START, 1.0), ("u01", "s", "a1", "click", START, 1.0)]


def write_silver(spark, lake: Lakehouse, events: pd.DataFrame, bad=BAD_EVENTS) -> None:
    rows = [tuple(r) for r in events.astype(object).itertuples(index=False)]
    rows = [(u, s, k, e, pd.Timestamp(t).to_pydatetime(), p) for u, s, k, e, t, p in rows]
    frame = spark.createDataFrame(rows + list(bad), EVENTS.ddl.replace(" NOT NULL", ""))
    lake.overwrite(frame, EVENTS.ref)
    orders = spark.createDataFrame([("o1", COLD_USER, START, "FR"), ("o2", "u00", START, "FR")],
                                   ORDERS.ddl.replace(" NOT NULL", ""))
    lake.overwrite(orders, ORDERS.ref)


@pytest.fixture(scope="module")
def shop(spark, mlflow_store, tmp_path_factory):
    """One job run shared by the tests of this module (the last test rewrites silver.events)."""
    tmp_path = tmp_path_factory.mktemp("als_job")
    model_name = f"als-{tmp_path.name}"
    config = load_config(LOCAL_CONF, [*base_overrides(tmp_path, mlflow_store), *FAST, "als.grid={rank: [2, 4]}",
                                      f"als.registered_model={model_name}"])
    lake = Lakehouse(spark, config.lakehouse)
    events = planted_events()
    write_silver(spark, lake, events)
    summary = run_job("als", config, spark)
    return config, lake, events, summary, model_name


def test_job_writes_recommendations_that_follow_the_planted_groups(shop):
    config, lake, events, summary, _ = shop
    recs = lake.read(USER_RECOMMENDATIONS).toPandas()
    assert {"user_id", "rank", "sku", "score", "is_fallback", "run_id", "generated_at"} <= set(recs.columns)
    assert (recs["run_id"] == summary.run_id).all()
    # every known user (events + orders, incl. the cold one) gets top_n rows ranked 1..5
    assert set(recs["user_id"]) == {f"u{u:02d}" for u in range(USERS)} | {COLD_USER}
    ranks = recs.groupby("user_id")["rank"].agg(lambda s: tuple(sorted(s)))
    assert (ranks == tuple(range(1, 6))).all()
    # already bought items are never recommended
    bought = set(map(tuple, events.loc[events.event_type == "purchase", ["user_id", "sku"]].to_numpy()))
    assert not bought & set(map(tuple, recs[["user_id", "sku"]].to_numpy()))
    # scores descend with rank
    warm = recs[~recs["is_fallback"]].sort_values(["user_id", "rank"])
    assert (warm.groupby("user_id")["score"].diff().dropna() <= 1e-9).all()
    # planted structure: the top 3 recommendations of warm users stay in their group
    top3 = warm[warm["rank"] <= 3]
    in_group = (top3["sku"].str[0] == top3["user_id"].str[1:].astype(int).map(lambda u: GROUPS[u % 2])).mean()
    assert in_group >= 0.9
    # cold start: the orders-only user gets the flagged popularity fallback, the most popular sku first
    cold = recs[recs["user_id"] == COLD_USER].sort_values("rank")
    assert cold["is_fallback"].all() and not recs.loc[recs["user_id"] != COLD_USER, "is_fallback"].any()
    popularity = events.groupby("sku")["user_id"].nunique().reset_index().sort_values(
        ["user_id", "sku"], ascending=[False, True])
    assert cold["sku"].tolist() == popularity["sku"].head(5).tolist()
    assert summary.metrics["fallback_share"] == pytest.approx(1 / (USERS + 1))


def test_similar_items_indexes_and_quarantine(shop):
    config, lake, events, summary, _ = shop
    similar = lake.read(SIMILAR_ITEMS).toPandas()
    assert set(similar["sku"]) == set(events["sku"])
    assert (similar["sku"] != similar["similar_sku"]).all()
    assert similar.groupby("sku").size().eq(3).all()
    assert ((similar["score"] <= 1 + 1e-6) & (similar["score"] >= -1 - 1e-6)).all()
    first = similar[similar["rank"] == 1]
    assert (first["sku"].str[0] == first["similar_sku"].str[0]).mean() >= 0.9
    users = lake.read(USER_INDEX).toPandas()
    assert sorted(users["user_idx"]) == list(range(USERS)) and users["user_id"].is_unique   # dense, one per user
    assert lake.read(ITEM_INDEX).count() == 20
    quarantined = lake.read(QUARANTINE).where(F.col("job") == "als").toPandas()
    assert sorted(quarantined["reason"]) == ["event_type_unweighted", "missing_user_id"]


def test_trials_are_child_runs_and_the_registered_model_scores(shop, spark):
    config, lake, events, summary, model_name = shop
    client = mlflow.tracking.MlflowClient()
    children = client.search_runs([client.get_run(summary.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(int(r.data.params["als.rank"]) for r in children) == [2, 4]
    parent = client.get_run(summary.run_id).data
    # two planted taste groups: the factor model must beat one popularity list for everybody
    assert parent.metrics["test_ndcg_at_k"] == pytest.approx(summary.metrics["test_ndcg_at_k"])
    assert parent.metrics["test_ndcg_at_k"] > parent.metrics["popularity_ndcg_at_k"] > 0
    sections = {key.split(".")[0] for key in parent.params if not key.startswith("input_version.")}
    assert sections == {"spark", "lakehouse", "tracking", "als"}   # its own section, not every job's
    model = mlflow.spark.load_model(f"models:/{model_name}/1")
    users = lake.read(USER_INDEX)
    items = lake.read(ITEM_INDEX)
    top = (lake.read(USER_RECOMMENDATIONS).where("rank = 1 AND NOT is_fallback").join(users, "user_id")
           .join(items, "sku").select("user_idx", "item_idx", "score"))
    scored = model.transform(top.select("user_idx", "item_idx")).join(top, ["user_idx", "item_idx"]).toPandas()
    assert len(scored) == USERS
    np.testing.assert_allclose(scored["prediction"], scored["score"], rtol=1e-4, atol=1e-5)


def test_bad_or_empty_input_keeps_previous_outputs(shop, spark):
    config, lake, events, summary, _ = shop
    versions = {ref: lake.version(ref) for ref in (USER_RECOMMENDATIONS, SIMILAR_ITEMS, USER_INDEX, ITEM_INDEX)}
    write_silver(spark, lake, events.iloc[0:0], bad=BAD_EVENTS + [(None, "s", "a1", "view", START, 1.0)])
    with pytest.raises(EmptyInputError, match="no valid interaction"):
        run_job("als", config, spark)
    assert {ref: lake.version(ref) for ref in versions} == versions
    assert lake.read(USER_RECOMMENDATIONS).select("run_id").distinct().first()[0] == summary.run_id


def test_item_cf_lists_shorter_than_top_n_are_topped_up(spark, mlflow_store, tmp_path):
    """Served item-based CF finds at most 4 items per user here (the rest of the user's group);
    asked for 12, each list is topped up with the popularity fallback after its last item."""
    config = load_config(LOCAL_CONF, [*base_overrides(tmp_path, mlflow_store), *FAST, "als.serve_from=[item_cf]",
                                      "als.top_n=12", "als.registered_model=null"])
    lake = Lakehouse(spark, config.lakehouse)
    events = planted_events()
    write_silver(spark, lake, events)
    summary = run_job("als", config, spark)
    assert any(line.startswith("  served: item_cf") for line in summary.lines)
    recs = lake.read(USER_RECOMMENDATIONS).toPandas()
    assert (recs.groupby("user_id")["rank"].agg(lambda s: tuple(sorted(s))) == tuple(range(1, 13))).all()
    assert not recs.duplicated(["user_id", "sku"]).any()
    bought = set(map(tuple, events.loc[events.event_type == "purchase", ["user_id", "sku"]].to_numpy()))
    assert not bought & set(map(tuple, recs[["user_id", "sku"]].to_numpy()))
    warm = recs[recs["user_id"] != COLD_USER]
    listed = warm[~warm["is_fallback"]].groupby("user_id")["rank"].max()
    topped = warm[warm["is_fallback"]].groupby("user_id")["rank"].min()
    assert len(listed) == USERS and (listed <= 4).all() and (topped == listed + 1).all()
