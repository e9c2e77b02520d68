"""Recommendations from orders: silver.orders + order_items (net of returns) → interactions, against
hand-computed values, and the als job end to end on a lakehouse that holds only order tables."""

from __future__ import annotations

import datetime as dt
import math
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from shopai_spark.app import load_config, main
from shopai_spark.config import ConfigError
from shopai_spark.recommend import interactions as fb
from shopai_spark.recommend.job import (
    USER_RECOMMENDATIONS,
    combine_parts,
    excluded_items,
    fallback_recommendations,
)
from shopai_spark.schemas import ORDER_ITEMS, ORDERS, RETURNS
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides, cli_args

pytestmark = pytest.mark.e2e

T0 = dt.datetime(2024, 3, 1)
DAY = dt.timedelta(days=1)
INTERACTIONS = "user_id STRING, item_id STRING, rating DOUBLE, ts TIMESTAMP, consumed BOOLEAN, relevant BOOLEAN"
ORDER_ROWS = [("o1", "u1", T0), ("o2", "u1", T0 + 10 * DAY), ("o3", None, T0 + 5 * DAY), ("o4", " ", T0),
              ("o5", "u2", T0 + 20 * DAY), ("o6", "u3", T0 + 2 * DAY)]
ITEM_ROWS = [("o1", "a", 2), ("o1", "b", 1), ("o2", "a", 1), ("o2", "c", 480),  # u1 (c: a wholesale line)
             ("o3", "a", 3), ("o4", "b", 1),                                    # guests (null, blank)
             ("o5", "b", 4), ("o6", "d", 1),
             ("o9", "a", 1)]                                                    # no order row: not used
RETURN_ROWS = [("u1", "b", 1),   # u1 returned its only b: net 0, dropped
               ("u2", "b", 1),   # u2 keeps 3 of 4
               (None, "a", 3),   # a guest's return: ignored
               ("u3", "a", 1)]   # u3 never bought a: nothing to subtract from


def order_frames(spark):
    orders = spark.createDataFrame(ORDER_ROWS, "order_id STRING, user_id STRING, order_ts TIMESTAMP")
    items = spark.createDataFrame(ITEM_ROWS, "order_id STRING, sku STRING, quantity INT")
    returns = spark.createDataFrame(RETURN_ROWS, "user_id STRING, sku STRING, quantity INT")
    return fb.order_lines(items, orders), returns


def expected(rows, schema, spark):
    """Hand-computed interactions (without ``relevant``: every shop interaction is) as a frame
    sorted like the result."""
    return spark.createDataFrame(sorted((*row, True) for row in rows), schema)


def test_order_lines_flag_guests_and_drop_lines_without_order(spark):
    lines, _ = order_frames(spark)
    got = lines.orderBy("sku", "order_ts", "user_id")
    want = spark.createDataFrame([
        ("u1", "a", 2, T0, False), (" ", "b", 1, T0, True), ("u1", "b", 1, T0, False),
        ("u1", "a", 1, T0 + 10 * DAY, False), (None, "a", 3, T0 + 5 * DAY, True),
        ("u2", "b", 4, T0 + 20 * DAY, False), ("u1", "c", 480, T0 + 10 * DAY, False),
        ("u3", "d", 1, T0 + 2 * DAY, False)],
        "user_id STRING, sku STRING, quantity INT, order_ts TIMESTAMP, guest BOOLEAN").orderBy(
        "sku", "order_ts", "user_id")
    assert_df_equality(got, want, ignore_nullable=True)
    assert lines.where("guest").count() == 2
    assert sorted(map(tuple, fb.purchased_items(lines).collect())) == [
        ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "b"), ("u3", "d")]  # u1's returned b included


@pytest.mark.parametrize(("scheme", "weight"), [
    ("log", lambda units: 1 + math.log(units)),
    ("linear", float),
    ("binary", lambda units: 1.0),
])
def test_ordered_items_weight_net_units_per_scheme(spark, scheme, weight):
    lines, returns = order_frames(spark)
    got = fb.ordered_items(lines, returns, scheme, 2.0).orderBy("user_id", "item_id")
    net = [("u1", "a", 3, T0 + 10 * DAY), ("u1", "c", 480, T0 + 10 * DAY), ("u2", "b", 3, T0 + 20 * DAY),
           ("u3", "d", 1, T0 + 2 * DAY)]
    want = expected([(u, s, 2.0 * weight(n), ts, True) for u, s, n, ts in net], got.schema, spark)
    assert_approx_df_equality(got, want, precision=1e-9)
    if scheme == "log":  # the wholesale line weighs 2 x 7.17, not 2 x 480
        assert got.where("item_id = 'c'").first()["rating"] == pytest.approx(2 * (1 + math.log(480)))


def test_ordered_items_without_returns_and_with_decay(spark):
    lines, returns = order_frames(spark)
    kept = fb.ordered_items(lines, None, "binary", 1.0)
    assert sorted((r["user_id"], r["item_id"]) for r in kept.collect()) == [
        ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "b"), ("u3", "d")]
    reference = T0 + 20 * DAY
    got = fb.ordered_items(lines, returns, "linear", 1.0, half_life_days=10.0, reference=reference)
    # age = reference - the latest order of the sku: u1's a and c 10 days, u2's b 0, u3's d 18
    want = expected([("u1", "a", 3 * 0.5, T0 + 10 * DAY, True), ("u1", "c", 480 * 0.5, T0 + 10 * DAY, True),
                     ("u2", "b", 3.0, T0 + 20 * DAY, True), ("u3", "d", 0.5 ** 1.8, T0 + 2 * DAY, True)],
                    got.schema, spark)
    assert_approx_df_equality(got.orderBy("user_id", "item_id"), want, precision=1e-9)
    with pytest.raises(ValueError, match="reference"):
        fb.ordered_items(lines, returns, "log", 1.0, half_life_days=3.0)


def test_events_and_orders_sum_per_user_and_item(spark):
    events = spark.createDataFrame(
        [("u1", "a", "view", T0), ("u1", "a", "purchase", T0 + DAY), ("u2", "e", "view", T0 + 30 * DAY),
         ("u3", "d", "view", T0)], "user_id STRING, sku STRING, event_type STRING, event_ts TIMESTAMP")
    lines, returns = order_frames(spark)
    parts = {"events": fb.weighted_events(events, {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}),
             "orders": fb.ordered_items(lines, returns, "binary", 2.0)}
    interactions, counts = combine_parts(parts)
    assert counts == {"events": 3, "orders": 4}
    want = expected([("u1", "a", 6.0 + 2.0, T0 + 10 * DAY, True), ("u1", "c", 2.0, T0 + 10 * DAY, True),
                     ("u2", "b", 2.0, T0 + 20 * DAY, True), ("u2", "e", 1.0, T0 + 30 * DAY, False),
                     ("u3", "d", 1.0 + 2.0, T0 + 2 * DAY, True)], INTERACTIONS, spark)
    assert_approx_df_equality(interactions.orderBy("user_id", "item_id"), want, precision=1e-9,
                              ignore_nullable=True)
    interactions.unpersist()


def test_purchases_are_excluded_for_warm_and_cold_users(spark):
    indexed = spark.createDataFrame([(0, 0, True), (0, 1, False), (1, 0, False), (1, 1, False), (2, 0, False),
                                     (2, 2, True)], "user_idx INT, item_idx INT, consumed BOOLEAN")
    bought = spark.createDataFrame([(1, 2)], "user_idx INT, item_idx INT")
    got = excluded_items(indexed, "purchased", bought)
    assert sorted(map(tuple, got.collect())) == [(0, 0), (1, 2), (2, 2)]
    assert excluded_items(indexed, "interacted", bought).count() == 7
    assert excluded_items(indexed, "none", bought) is None
    items = spark.createDataFrame([("x", 0), ("y", 1), ("z", 2)], "item_id STRING, item_idx INT")
    cold = spark.createDataFrame([("c1",), ("c2",)], "user_id STRING")
    purchased = spark.createDataFrame([("c1", "x"), ("u9", "y")], "user_id STRING, item_id STRING")
    recs = fallback_recommendations(indexed, items, cold, 2, purchased).orderBy("user_id", "rank")
    # popularity: x (3 users), y (2), z (1); c1 bought x, so it gets y, z
    assert [(r["user_id"], r["rank"], r["sku"]) for r in recs.collect()] == [
        ("c1", 1, "y"), ("c1", 2, "z"), ("c2", 1, "x"), ("c2", 2, "y")]
    assert recs.where("user_id = 'c1' AND rank = 1").first()["score"] == pytest.approx(2 / 3)
    # a short list is topped up after its last item, skipping what is on it and what was bought
    listed = spark.createDataFrame([("c1", "z", 1), ("c2", "x", 1)], "user_id STRING, sku STRING, rank INT")
    topped = fallback_recommendations(indexed, items, cold, 3, purchased, listed=listed).orderBy("user_id", "rank")
    assert [(r["user_id"], r["rank"], r["sku"], r["is_fallback"]) for r in topped.collect()] == [
        ("c1", 2, "y", True), ("c2", 2, "y", True), ("c2", 3, "z", True)]


@pytest.mark.parametrize(("override", "message"), [
    ("als.order_weight=0", "als.order_weight"),
    ("als.order_weight=.nan", "als.order_weight"),
    ("als.order_quantity_weight=log1p", "als.order_quantity_weight"),
    ("als.subtract_returns=maybe", "als.subtract_returns"),
    ("als.source=order", "als.source"),
])
def test_order_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(LOCAL_CONF, [override])


# --- the job on a lakehouse with only silver.orders / order_items / returns ------------------------

CUSTOMERS = 30
FAST = ("als.rank=4", "als.max_iter=3", "als.num_blocks=2", "als.top_n=5", "als.similar_m=3", "als.k=5",
        "als.checkpoint_interval=2", "als.registered_model=null")


def planted_orders(seed: int = 1) -> tuple[list, list, list]:
    """Customers c00..c29 of two taste groups (a: skus a0..a9, b: b0..b9), two orders each of two
    skus of their group; c00 also buys 480 units once. Guests (null user_id) buy across groups. The
    customer ret00 bought only a0 and returned it: no interaction left, a cold user."""
    rng = np.random.default_rng(seed)
    orders, items = [], []
    for c in range(CUSTOMERS):
        group = "ab"[c % 2]
        skus = [f"{group}{i}" for i in rng.choice(10, size=4, replace=False)]
        for o in range(2):
            order_id = f"o{c:02d}-{o}"
            orders.append((order_id, f"c{c:02d}", T0 + dt.timedelta(days=int(rng.integers(0, 60))), "FR"))
            items += [(order_id, sku, int(rng.integers(1, 4)), 9.5, 1) for sku in skus[2 * o:2 * o + 2]]
    items[0] = (items[0][0], items[0][1], 480, 1.2, 3)
    for g in range(5):
        orders.append((f"guest-{g}", None, T0 + g * DAY, "DE"))
        items += [(f"guest-{g}", "a0", 1, 9.5, 1), (f"guest-{g}", "b0", 2, 9.5, 1)]
    orders.append(("oret", "ret00", T0, "FR"))
    items.append(("oret", "a0", 1, 9.5, 1))
    returns = [("r1", "oret", "ret00", "a0", 1, 9.5, T0 + 3 * DAY, 1),
               ("r2", "guest-0", None, "b0", 2, 9.5, T0 + 2 * DAY, 1)]
    return orders, items, returns


@pytest.fixture(scope="module")
def orders_shop(spark, mlflow_store, tmp_path_factory):
    """A lakehouse holding only silver.orders, order_items and returns (no events, no products)."""
    root = tmp_path_factory.mktemp("als_orders")
    lake = Lakehouse(spark, load_config(LOCAL_CONF, base_overrides(root, mlflow_store)).lakehouse)
    orders, items, returns = planted_orders()
    for table, rows in ((ORDERS, orders), (ORDER_ITEMS, items), (RETURNS, returns)):
        lake.overwrite(spark.createDataFrame(rows, table.ddl), table.ref)
    return root, lake, orders, items


def test_als_from_orders_only_through_main(orders_shop, mlflow_store, capsys):
    root, lake, orders, items = orders_shop
    assert main("als", cli_args(root, mlflow_store, "als.source=orders", *FAST)) == 0
    out = capsys.readouterr().out
    frame = pd.DataFrame(items, columns=["order_id", "sku", "quantity", "unit_price", "source_lines"]).merge(
        pd.DataFrame(orders, columns=["order_id", "user_id", "order_ts", "country"]), on="order_id")
    customers = frame[frame["user_id"].notna()]
    pairs = set(map(tuple, customers[["user_id", "sku"]].to_numpy()))
    guest_lines = int(frame["user_id"].isna().sum())
    interactions = len(pairs) - 1  # ret00's a0 is fully returned
    assert "source=orders" in out
    assert f"interactions: {interactions:,} (from orders {interactions:,}); guest order lines skipped: {guest_lines}" in out
    run_id = re.search(r"== als \(MLflow run (\w+)\) ==", out)[1]
    metrics = mlflow.tracking.MlflowClient().get_run(run_id).data.metrics
    assert metrics["interactions_from_orders"] == interactions
    assert metrics["guest_order_lines_skipped"] == guest_lines == 10
    assert "interactions_from_events" not in metrics

    recs = lake.read(USER_RECOMMENDATIONS).toPandas()
    assert len(recs) > 0 and recs["user_id"].notna().all()  # guests get no row
    assert set(recs["user_id"]) == {f"c{c:02d}" for c in range(CUSTOMERS)} | {"ret00"}
    assert recs.groupby("user_id").size().eq(5).all()
    # nothing a customer bought comes back, not even the returned a0 of the cold ret00
    assert not pairs & set(map(tuple, recs[["user_id", "sku"]].to_numpy()))
    assert recs.loc[recs["user_id"] == "ret00", "is_fallback"].all()
    assert not recs.loc[recs["user_id"] != "ret00", "is_fallback"].any()


def test_missing_source_tables_fail_in_one_line_naming_the_table(orders_shop, mlflow_store, tmp_path, capsys):
    root, *_ = orders_shop
    assert main("als", cli_args(root, mlflow_store, "als.source=events", *FAST)) == 3
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("als failed")]
    assert line.startswith("als failed: als: silver.events not found")
    assert "were ignored" in line and "--set als.source=orders" in line
    assert main("als", cli_args(root, mlflow_store, "als.source=events+orders", *FAST)) == 3
    err = capsys.readouterr().err
    assert "silver.events not found" in err and "--set als.source=orders" in err
    assert main("als", cli_args(tmp_path, mlflow_store, "als.source=orders", *FAST)) == 3
    err = capsys.readouterr().err
    assert "silver.orders not found" in err and "ingest an order export" in err
