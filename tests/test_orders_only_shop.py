"""A shop with an order export only: no silver.events, no silver.products, guest checkouts.

segments and demand_features run through ``runtime.main`` on a small hand-made lakehouse (12
customers in three planted kinds, guest orders with a null ``user_id``, one order with a blank user
id, three months). Guests are left out of the customer segments and counted; their units are in the
demand panel; the features that need events or categories are null.
"""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import load_config, main
from shopai_spark.demand.job import INVENTORY_SIGNALS, SKU_DEMAND_FEATURES
from shopai_spark.quality import QUARANTINE
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS
from shopai_spark.segment.config import EVENT_FEATURES
from shopai_spark.segment.features import Inputs, customer_features, guest_counts, split_inputs
from shopai_spark.segment.job import CUSTOMER_SEGMENTS
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides, cli_args

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 1, 1, 10, 0)
DAYS = 90
SKUS = ("s1", "s2", "s3", "s4", "s5")
GUEST_ONLY_SKU = "s-guest"
# kind → (customers, days between orders, first order day, units per line, unit price)
KINDS = {"frequent": (4, 5, 0, 3, 40.0), "regular": (4, 15, 3, 1, 20.0), "lapsed": (4, 30, 1, 1, 10.0)}
GUEST_ORDERS = 10
SEGMENTS = ("segments.k=3", "segments.n_init=1")
DEMAND = ("demand.lags=[1,7]", "demand.rolling_windows=[7]", "demand.zero_share_windows=[7]", "demand.ewm_window=7",
          "demand.price_window=7", "demand.promo_reference_days=14", "demand.stockout_rate_window=14",
          "demand.horizon=3", "demand.lead_time_days=3", "demand.gbt_max_iter=3", "demand.gbt_max_depth=2",
          "demand.class_window_days=28", "demand.backtest_origins=4", "demand.selection_origins=2",
          "demand.origin_step_days=7", "demand.min_history_days=14", "demand.min_class_skus=1")


def shop_rows() -> dict[str, list[tuple]]:
    """Silver rows: orders (customers, guests, one blank user id), order_items (with source_lines),
    returns (one by a customer, one by a guest)."""
    orders, items = [], []
    for kind, (customers, every, first, units, price) in KINDS.items():
        for c in range(customers):
            user = f"{kind}{c}"
            last = first + c if kind == "lapsed" else DAYS - 1 - c       # lapsed customers stop early
            for n, day in enumerate(range(first + c, last + 1, every)):
                order_id = f"{user}-o{n}"
                orders.append((order_id, user, START + dt.timedelta(days=day), "DE"))
                items.append((order_id, SKUS[(n + c) % len(SKUS)], units, price, 1))
    for g in range(GUEST_ORDERS):
        order_id = f"guest-o{g}"
        orders.append((order_id, None, START + dt.timedelta(days=g * 9, hours=2), "FR"))
        items.append((order_id, SKUS[g % len(SKUS)], 2, 15.0, 2))
        items.append((order_id, GUEST_ONLY_SKU, 1, 9.0, 1))
    orders.append(("blank-o1", "  ", START + dt.timedelta(days=40), "DE"))
    items.append(("blank-o1", "s1", 4, 10.0, 1))
    returns = [("r1", "frequent0-o0", "frequent0", SKUS[0], 1, 40.0, START + dt.timedelta(days=2), 1),
               ("r2", "guest-o0", None, SKUS[0], 1, 15.0, START + dt.timedelta(days=3), 1)]
    return {"orders": orders, "order_items": items, "returns": returns}


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory, mlflow_store):
    """(folder whose lakehouse holds only silver orders, order_items and returns, the rows)."""
    folder = tmp_path_factory.mktemp("orders_only")
    lake = lakehouse(spark, folder, mlflow_store)
    rows = shop_rows()
    for table in (ORDERS, ORDER_ITEMS, RETURNS):
        lake.ensure(table.ref, table.ddl, table.constraints)
        lake.merge(spark.createDataFrame(rows[table.ref.name], lake.read(table.ref).schema), table.ref, table.keys)
    assert not lake.exists(EVENTS.ref) and not lake.exists(PRODUCTS.ref)
    return folder, rows


def lakehouse(spark, folder, mlflow_store) -> Lakehouse:
    """The lakehouse the jobs use when run with ``cli_args(folder, ...)``."""
    return Lakehouse(spark, load_config(LOCAL_CONF, base_overrides(folder, mlflow_store)).lakehouse)


def job_run(folder, job: str) -> mlflow.entities.Run:
    runs = mlflow.search_runs(experiment_names=[f"test-{folder.name}"], filter_string=f"tags.job = '{job}'",
                              order_by=["attributes.start_time DESC"], output_format="list")
    return runs[0]


def test_customer_features_leave_guests_out_and_unknown_features_null(spark):
    rows = shop_rows()
    schemas = {t.ref.name: t.ddl.replace(" NOT NULL", "") for t in (ORDERS, ORDER_ITEMS, RETURNS)}
    frames = {name: spark.createDataFrame(rows[name], schemas[name]) for name in rows}
    valid, rejected = split_inputs(Inputs(**frames, products=None, events=None))
    assert set(rejected) == {"orders", "order_items", "returns"}
    assert [r["order_id"] for r in rejected["orders"].collect()] == ["blank-o1"]
    reference = dt.date(2024, 4, 1)
    assert guest_counts(valid, reference) == {"guest_orders_skipped": GUEST_ORDERS, "guest_returns_skipped": 1}
    features = customer_features(valid, reference).collect()
    assert sorted(r["user_id"] for r in features) == sorted(f"{k}{c}" for k, v in KINDS.items() for c in range(v[0]))
    assert all(r["has_orders"] for r in features)
    assert all(r[f] is None for r in features for f in (*EVENT_FEATURES, "category_diversity"))
    first = {r["user_id"]: r for r in features}["frequent0"]
    assert first["tenure_days"] == (reference - START.date()).days   # tenure from the first order
    assert first["monetary"] == pytest.approx(sum(3 * 40.0 for r in rows["orders"] if r[1] == "frequent0") - 40.0)


def test_segments_without_events_skip_and_count_guests(spark, shop, mlflow_store, capsys):
    folder, rows = shop
    assert main("segments", cli_args(folder, mlflow_store, *SEGMENTS)) == 0
    out = capsys.readouterr().out
    assert "no silver.events: behaviour features left empty" in out
    assert f"guest checkouts left out of the customers: {GUEST_ORDERS} orders, 1 returns" in out

    lake = lakehouse(spark, folder, mlflow_store)
    segments = lake.read(CUSTOMER_SEGMENTS).toPandas()
    customers = {r[1] for r in rows["orders"] if r[1] is not None and r[1].strip()}
    assert len(segments) > 0 and set(segments["user_id"]) == customers      # no guest, no blank id
    assert segments["segment_id"].nunique() == 3 and (segments["segment_id"] > 0).all()
    assert segments[[*EVENT_FEATURES, "category_diversity"]].isna().all().all()

    run = job_run(folder, "segments")
    assert run.data.metrics["guest_orders_skipped"] == GUEST_ORDERS
    assert run.data.metrics["guest_returns_skipped"] == 1
    assert run.data.metrics["quarantined.orders.missing_user_id"] == 1
    assert "input_version.silver.orders" in run.data.params
    assert not {"input_version.silver.events", "input_version.silver.products"} & set(run.data.params)
    quarantined = lake.read(QUARANTINE).filter(F.col("job") == "segments").toPandas()
    assert list(zip(quarantined["source"], quarantined["reason"], strict=True)) == [("silver.orders",
                                                                                     "missing_user_id")]


def test_segments_refuse_event_features_without_events(shop, mlflow_store, capsys):
    folder, _ = shop
    args = cli_args(folder, mlflow_store, *SEGMENTS, "segments.features=[recency_days,frequency,views]")
    assert main("segments", args) == 3
    err = capsys.readouterr().err
    assert "the model needs views" in err and "no silver.events" in err


def test_demand_without_events_counts_guest_units(spark, shop, mlflow_store, capsys):
    folder, rows = shop
    assert main("demand_features", cli_args(folder, mlflow_store, *DEMAND)) == 0
    out = capsys.readouterr().out
    assert "no silver.events: views, cart_adds and their features left empty" in out

    lake = lakehouse(spark, folder, mlflow_store)
    panel = lake.read(SKU_DEMAND_FEATURES)
    assert panel.count() > 0
    sold = sum(r[2] for r in rows["order_items"])                          # guests and the blank id included
    guest_units = sum(r[2] for r in rows["order_items"] if r[0].startswith("guest-"))
    assert guest_units > 0 and panel.agg(F.sum("units")).first()[0] == sold
    assert panel.filter(F.col("sku") == GUEST_ONLY_SKU).agg(F.sum("units")).first()[0] == GUEST_ORDERS
    activity = ("views", "cart_adds", "views_sum_7", "cart_adds_sum_7")
    assert panel.filter(" OR ".join(f"{c} IS NOT NULL" for c in activity)).count() == 0
    assert panel.filter("likely_stockout").count() == 0
    signals = lake.read(INVENTORY_SIGNALS).toPandas()
    assert len(signals) > 0 and (signals["reorder_point_units"] > 0).all()
    # intermittent demand from orders alone: no class chose a model that lost to the zero forecast
    assert set(signals["demand_class"].dropna()) & {"intermittent", "lumpy"}
    assert "chosen models vs the zero forecast: none worse on the selection origins" in out

    params = job_run(folder, "demand_features").data.params
    assert "input_version.silver.order_items" in params and "input_version.silver.events" not in params
