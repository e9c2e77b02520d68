"""Customer features and bad-input rules against a plain pandas reference; scaling parity."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.ml import Pipeline

from shopai_spark.quality import count_by_reason
from shopai_spark.segment.config import ALL_FEATURES, LOG_FEATURES, SegmentsConfig
from shopai_spark.segment.features import Inputs, customer_features, default_reference_date, split_inputs
from shopai_spark.segment.scaling import preprocessing_stages, scaler_of, transform_rows

REF = dt.date(2024, 7, 1)
T = pd.Timestamp

ORDERS = pd.DataFrame([
    ("o1", "u1", T("2024-06-01 10:00"), "DE"),
    ("o2", "u1", T("2024-06-20 12:00"), "DE"),
    ("o3", "u2", T("2024-01-15 08:00"), "FR"),
    ("o4", None, T("2024-05-01 09:00"), "FR"),     # guest checkout: valid, in no customer's features
    ("o5", "u3", T("2099-01-01 00:00"), "FR"),     # future_timestamp
    ("o6", "u2", T("2024-07-05 00:00"), "FR"),     # after the reference date: left out, not bad
    ("o7", "u4", T("2024-03-01 15:00"), "IT"),
    ("o8", "  ", T("2024-05-02 09:00"), "IT"),     # blank id → missing_user_id
], columns=["order_id", "user_id", "order_ts", "country"])
ITEMS = pd.DataFrame([
    ("o1", "s1", 2, 10.0), ("o1", "s2", 1, 5.0), ("o2", "s3", 3, 7.5), ("o3", "s1", 1, 10.0),
    ("o4", "s1", 1, 1.0), ("o5", "s1", 1, 1.0), ("o6", "s2", 5, 5.0), ("o7", "s2", 1, 5.0),
    ("o7", "s9", 1, -3.0),                          # negative_spend
], columns=["order_id", "sku", "quantity", "unit_price"])
RETURNS = pd.DataFrame([
    ("r1", "o7", "u4", "s2", 2, 5.0, T("2024-03-05 10:00")),   # returns exceed spend → clamped to 0
    ("r2", "o1", "u1", "s1", 1, 10.0, T("2024-06-05 10:00")),
    ("r3", "o1", "u1", "s1", 1, 10.0, T("2024-07-02 10:00")),  # after the reference date
], columns=["return_id", "original_order_id", "user_id", "sku", "quantity", "unit_price", "return_ts"])
PRODUCTS = pd.DataFrame([("s1", "t1", "A", "b", 10.0), ("s2", "t2", "B", "b", 5.0), ("s3", "t3", "A", "b", 7.5),
                         ("s9", "t9", None, "b", 3.0)],
                        columns=["sku", "title", "category", "brand", "list_price"])
EVENTS = pd.DataFrame([
    ("u1", "x1", "s1", "view", T("2024-05-20 10:00"), 10.0),
    ("u1", "x1", "s1", "view", T("2024-05-21 10:00"), 10.0),
    ("u1", "x1", "s1", "view", T("2024-05-22 10:00"), 10.0),
    ("u1", "x1", "s1", "add_to_cart", T("2024-05-22 10:01"), 10.0),
    ("u1", "x1", "s1", "purchase", T("2024-06-01 10:00"), 10.0),
    ("u2", "x2", "s2", "purchase", T("2024-01-15 08:00"), 5.0),     # purchase without views → conversion 0
    ("u5", "x5", "s2", "view", T("2024-06-10 10:00"), 5.0),         # prospect: events, no orders
    ("u5", "x5", "s2", "add_to_cart", T("2024-06-11 10:00"), 5.0),
    ("u6", "x6", "s2", "view", T("2024-07-03 10:00"), 5.0),         # only after the reference date
    (None, "x7", "s2", "view", T("2024-06-10 10:00"), 5.0),          # missing_user_id
    ("u1", "x8", "s2", "view", T("2099-06-10 10:00"), 5.0),          # future_timestamp
], columns=["user_id", "session_id", "sku", "event_type", "event_ts", "price"])

SCHEMAS = {
    "orders": "order_id STRING, user_id STRING, order_ts TIMESTAMP, country STRING",
    "order_items": "order_id STRING, sku STRING, quantity INT, unit_price DOUBLE",
    "returns": "return_id STRING, original_order_id STRING, user_id STRING, sku STRING, quantity INT, "
               "unit_price DOUBLE, return_ts TIMESTAMP",
    "products": "sku STRING, title STRING, category STRING, brand STRING, list_price DOUBLE",
    "events": "user_id STRING, session_id STRING, sku STRING, event_type STRING, event_ts TIMESTAMP, price DOUBLE",
}
FEATURE_SCHEMA = "user_id STRING, has_orders BOOLEAN, monetary_clamped BOOLEAN, " + ", ".join(
    f"{f} DOUBLE" for f in ALL_FEATURES)


def frames(spark, **tables: pd.DataFrame) -> Inputs:
    def to_spark(name, table):
        rows = [tuple(None if pd.isna(v) else (v.to_pydatetime(warn=False) if isinstance(v, pd.Timestamp) else v) for v in r)
                for r in table.itertuples(index=False)]
        return spark.createDataFrame(rows, SCHEMAS[name])
    return Inputs(**{name: to_spark(name, table) for name, table in tables.items()})


def all_inputs(spark) -> Inputs:
    return frames(spark, orders=ORDERS, order_items=ITEMS, returns=RETURNS, products=PRODUCTS, events=EVENTS)


def reference_features(ref: dt.date) -> pd.DataFrame:
    """The documented feature definitions in plain pandas (rules applied by hand)."""
    now, cut = pd.Timestamp.now(), pd.Timestamp(ref)
    def blank(s: pd.Series) -> pd.Series:
        return s.isna() | (s.fillna("").str.strip() == "")

    orders = ORDERS[~blank(ORDERS.user_id) & (ORDERS.order_ts <= now) & (ORDERS.order_ts < cut)]
    items = ITEMS[ITEMS.quantity * ITEMS.unit_price >= 0]
    rets = RETURNS[(RETURNS.return_ts < cut) & (RETURNS.return_ts <= now)]
    events = EVENTS[~blank(EVENTS.user_id) & (EVENTS.event_ts <= now) & (EVENTS.event_ts < cut)]
    lines = items.merge(orders[["order_id", "user_id"]], on="order_id").merge(PRODUCTS[["sku", "category"]],
                                                                                on="sku", how="left")
    rows = []
    for user in sorted(set(orders.user_id) | set(events.user_id)):
        o, li = orders[orders.user_id == user], lines[lines.user_id == user]
        r, e = rets[rets.user_id == user], events[events.user_id == user]
        freq = float(o.order_id.nunique())
        net = float((li.quantity * li.unit_price).sum() - (r.quantity * r.unit_price).sum())
        monetary = max(net, 0.0)
        views = float((e.event_type == "view").sum())
        purchases = float((e.event_type == "purchase").sum())
        first = min([t for t in (o.order_ts.min(), e.event_ts.min()) if not pd.isna(t)])
        rows.append({
            "user_id": user, "has_orders": freq > 0, "monetary_clamped": net < 0,
            "recency_days": float((ref - o.order_ts.max().date()).days) if freq else None,
            "frequency": freq, "monetary": monetary,
            "avg_order_value": monetary / freq if freq else 0.0,
            "avg_basket_size": float(li.quantity.sum()) / freq if freq else 0.0,
            "views": views, "cart_adds": float((e.event_type == "add_to_cart").sum()),
            "conversion_rate": min(purchases / views, 1.0) if views else 0.0,
            "category_diversity": float(li.category.dropna().nunique()),
            "tenure_days": float((ref - first.date()).days),
        })
    return pd.DataFrame(rows)


def test_features_match_pandas_reference(spark):
    valid, _ = split_inputs(all_inputs(spark))
    actual = customer_features(valid, REF)
    expected = spark.createDataFrame(
        [tuple(None if (isinstance(v, float) and np.isnan(v)) else v for v in r)
         for r in reference_features(REF).itertuples(index=False)], FEATURE_SCHEMA)
    assert_approx_df_equality(actual.orderBy("user_id"), expected.orderBy("user_id"), 1e-9, ignore_nullable=True)
    by_user = {r["user_id"]: r for r in actual.collect()}
    # hand-checked anchors, so the reference cannot drift with the code
    assert set(by_user) == {"u1", "u2", "u4", "u5"}
    assert by_user["u1"]["monetary"] == pytest.approx(25.0 + 22.5 - 10.0)
    assert by_user["u1"]["recency_days"] == 11.0 and by_user["u1"]["frequency"] == 2.0
    assert by_user["u4"]["monetary"] == 0.0 and by_user["u4"]["monetary_clamped"]
    assert not by_user["u5"]["has_orders"] and by_user["u5"]["recency_days"] is None
    assert by_user["u2"]["conversion_rate"] == 0.0 and by_user["u2"]["category_diversity"] == 1.0


def test_bad_rows_are_rejected_with_reasons(spark):
    _, rejected = split_inputs(all_inputs(spark))
    assert count_by_reason(rejected["orders"]) == {"missing_user_id": 1, "future_timestamp": 1}
    assert count_by_reason(rejected["order_items"]) == {"negative_spend": 1}
    assert count_by_reason(rejected["events"]) == {"missing_user_id": 1, "future_timestamp": 1}
    assert rejected["returns"].count() == 0


def test_default_reference_date_is_day_after_last_valid_order(spark):
    valid, _ = split_inputs(all_inputs(spark))
    assert default_reference_date(valid.orders) == dt.date(2024, 7, 6)
    with pytest.raises(ValueError, match="no valid orders"):
        default_reference_date(valid.orders.limit(0))


def test_numpy_transform_matches_spark_scaling(spark):
    valid, _ = split_inputs(all_inputs(spark))
    customers = customer_features(valid, REF).filter("has_orders")
    model = Pipeline(stages=preprocessing_stages(ALL_FEATURES)).fit(customers)
    rows = customers.select(*ALL_FEATURES).toPandas().to_numpy()
    spark_scaled = np.array([r["features"].toArray() for r in model.transform(customers).select("features").collect()])
    np.testing.assert_allclose(transform_rows(rows, ALL_FEATURES, scaler_of(model)), spark_scaled, atol=1e-9)
    # reference: log1p on the skewed features, then z-score with the sample standard deviation
    logged = np.column_stack([np.log1p(rows[:, j]) if f in LOG_FEATURES else rows[:, j]
                              for j, f in enumerate(ALL_FEATURES)])
    std = logged.std(axis=0, ddof=1)
    expected = np.where(std > 0, (logged - logged.mean(axis=0)) / np.where(std > 0, std, 1), 0.0)
    np.testing.assert_allclose(spark_scaled, expected, atol=1e-9)


@pytest.mark.parametrize("override, key", [
    ({"features": ["recency_days", "bogus"]}, "segments.features"),
    ({"k_min": 5, "k_max": 3}, "segments.k_min"),
    ({"k": 99}, "segments.k"),
    ({"reference_date": "2024-13-01"}, "segments.reference_date"),
])
def test_config_validation_names_key(override, key):
    with pytest.raises(ValueError, match=key):
        SegmentsConfig(**override)
