"""Recommendation inputs: implicit weights + decay, ratings and u.data adapter, validation rules,
id indexing, splits and config checks — each against a plain Python/pandas reference."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from shopai_spark.app import load_config
from shopai_spark.config import ConfigError
from shopai_spark.quality import split_valid
from shopai_spark.recommend import interactions as fb
from shopai_spark.recommend.indexing import build_index, to_ids, to_indices
from shopai_spark.recommend.split import leave_last_k_split, random_split, split, time_split, validation_split
from tests.conftest import LOCAL_CONF

T0 = dt.datetime(2024, 3, 1)
WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
EVENTS = [
    ("u1", "a", "view", T0), ("u1", "a", "view", T0 + dt.timedelta(days=2)),
    ("u1", "a", "purchase", T0 + dt.timedelta(days=10)), ("u1", "b", "add_to_cart", T0 + dt.timedelta(days=5)),
    ("u2", "a", "view", T0 + dt.timedelta(days=20)), ("u2", "c", "purchase", T0 - dt.timedelta(days=30)),
]


def events_frame(spark, rows=EVENTS):
    return spark.createDataFrame(rows, "user_id STRING, sku STRING, event_type STRING, event_ts TIMESTAMP")


def reference_weights(rows, weights, half_life=None, reference=None) -> pd.DataFrame:
    """Plain Python: decayed weights summed per (user, sku)."""
    out: dict[tuple[str, str], list] = {}
    for user, sku, kind, ts in rows:
        w = weights[kind]
        if half_life is not None:
            age = max((reference - ts).total_seconds() / 86400.0, 0.0)
            w *= 0.5 ** (age / half_life)
        acc = out.setdefault((user, sku), [0.0, ts, False])
        acc[0] += w
        acc[1] = max(acc[1], ts)
        acc[2] = acc[2] or kind == "purchase"
    return pd.DataFrame([(u, s, *v, True) for (u, s), v in sorted(out.items())],
                        columns=["user_id", "item_id", "rating", "ts", "consumed", "relevant"])


@pytest.mark.parametrize("half_life", [None, 7.0])
def test_weighted_events_match_python(spark, half_life):
    reference = T0 + dt.timedelta(days=14)
    got = fb.weighted_events(events_frame(spark), WEIGHTS, half_life, reference).orderBy("user_id", "item_id")
    want = spark.createDataFrame(reference_weights(EVENTS, WEIGHTS, half_life, reference), got.schema)
    assert_approx_df_equality(got, want, precision=1e-9)
    if half_life:  # a purchase 4 days before the reference still weighs 5 * 0.5**(4/7)
        u1a = got.where("user_id = 'u1' AND item_id = 'a'").first()["rating"]
        assert u1a == pytest.approx(0.5 ** 2 + 0.5 ** (12 / 7) + 5 * 0.5 ** (4 / 7))


def test_zero_weight_events_are_dropped_and_decay_needs_a_reference(spark):
    got = fb.weighted_events(events_frame(spark), {"view": 0.0, "add_to_cart": 3.0, "purchase": 5.0})
    assert {(r["user_id"], r["item_id"]) for r in got.collect()} == {("u1", "a"), ("u1", "b"), ("u2", "c")}
    with pytest.raises(ValueError, match="reference"):
        fb.weighted_events(events_frame(spark), WEIGHTS, half_life_days=3.0)


def test_event_and_rating_rules_quarantine_bad_rows(spark):
    events = events_frame(spark, EVENTS + [(None, "a", "view", T0), ("u3", " ", "view", T0),
                                           ("u3", "a", "click", T0), ("u3", "a", "view", None)])
    good, rejected = split_valid(events, fb.event_rules(WEIGHTS))
    assert good.count() == len(EVENTS)
    assert sorted(r["reason"] for r in rejected.collect()) == [
        "event_type_unweighted", "missing_event_ts", "missing_sku", "missing_user_id"]
    ratings = spark.createDataFrame(
        [("u1", "i1", 4.0), ("u1", "i2", float("nan")), ("u2", None, 3.0), ("u2", "i1", -1.0),
         ("u3", "i3", None), ("u3", "i4", float("inf"))], "user_id STRING, item_id STRING, rating DOUBLE")
    for mode, valid, reasons in [
        ("implicit", 1, ["missing_item_id", "rating_negative", "rating_not_a_number", "rating_not_a_number",
                         "rating_not_a_number"]),
        ("explicit", 2, ["missing_item_id", "rating_not_a_number", "rating_not_a_number", "rating_not_a_number"]),
    ]:
        good, rejected = split_valid(ratings, fb.rating_rules(mode))
        assert good.count() == valid
        assert sorted(r["reason"] for r in rejected.collect()) == reasons


def test_rated_items_keep_every_rating_with_two_thresholds(spark):
    ratings = spark.createDataFrame(
        [("u1", "i1", 4.0, T0), ("u1", "i1", 2.0, T0 + dt.timedelta(days=1)), ("u1", "i2", 5.0, T0),
         ("u2", "i1", 3.0, T0)], "user_id STRING, item_id STRING, rating DOUBLE, ts TIMESTAMP")
    schema = "user_id STRING, item_id STRING, rating DOUBLE, ts TIMESTAMP, consumed BOOLEAN, relevant BOOLEAN"
    t1 = T0 + dt.timedelta(days=1)

    def rows(r1, r2, r3):   # weights of (u1, i1: mean 3), (u1, i2: 5), (u2, i1: 3); relevant = mean >= 4
        return spark.createDataFrame([("u1", "i1", r1, t1, True, False), ("u1", "i2", r2, T0, True, True),
                                      ("u2", "i1", r3, T0, True, False)], schema)

    def rated(*args):
        return fb.rated_items(ratings, *args).orderBy("user_id", "item_id")

    assert_df_equality(rated("explicit", 4.0), rows(3.0, 5.0, 3.0), ignore_nullable=True)
    # the usual implicit protocol: train on every rating, relevant = rating >= 4
    assert_df_equality(rated("implicit", 4.0), rows(1.0, 1.0, 1.0), ignore_nullable=True)
    # feedback only from ratings >= 3.5, weighted by the rating
    assert_df_equality(rated("implicit", 4.0, 3.5, "rating"), rows(0.0, 5.0, 0.0), ignore_nullable=True)
    # rows without feedback stay (excluded from recommendations, evaluated) but are not trained on
    assert fb.training_feedback(rated("implicit", 4.0, 3.5), "implicit").count() == 1
    assert fb.training_feedback(rated("explicit", 4.0), "explicit").count() == 3


def test_read_udata_parses_movielens_lines_and_marks_garbage(spark, tmp_path):
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t3.5\t891717742\nx\ty\tbad\tnope\n")
    got = fb.read_udata(spark, str(path)).collect()
    assert [(r["user_id"], r["item_id"], r["rating"]) for r in got] == [
        ("196", "242", 3.0), ("186", "302", 3.5), ("x", "y", None)]
    assert got[0]["ts"] == dt.datetime.fromtimestamp(881250949, dt.timezone.utc).replace(tzinfo=None)
    good, rejected = split_valid(fb.read_udata(spark, str(path)), fb.rating_rules("explicit"))
    assert good.count() == 2 and rejected.first()["reason"] == "rating_not_a_number"


def test_index_is_dense_deterministic_and_round_trips(spark):
    frame = spark.createDataFrame([("u3", "b"), ("u1", "a"), ("u3", "a"), (None, "c"), ("u2", "c")]
                                  + [(f"v{n}", f"i{n % 7}") for n in range(40)], "user_id STRING, item_id STRING")
    users = build_index(frame, "user_id", "user_idx")
    items = build_index(frame, "item_id", "item_idx")
    for index, id_col, idx_col, ids in ((users, "user_id", "user_idx", 43), (items, "item_id", "item_idx", 10)):
        got = index.toPandas()
        assert sorted(got[idx_col]) == list(range(ids)) and got[id_col].is_unique   # dense 0..n-1, one per id
        again = build_index(frame.orderBy(F.rand(3)), id_col, idx_col)   # other row order, same numbering
        assert_df_equality(index.orderBy(idx_col), again.orderBy(idx_col))
    indexed = to_indices(frame, users, items)
    assert indexed.count() == frame.count() - 1  # the null user is not indexed
    back = to_ids(indexed.select("user_idx", "item_idx"), users, items)
    assert sorted(map(tuple, back.select("user_id", "item_id").collect())) == sorted(
        r for r in map(tuple, frame.collect()) if r[0] is not None)


INTERACTIONS = [(f"u{u}", f"i{i}", 1.0, T0 + dt.timedelta(days=u + 3 * i)) for u in range(4) for i in range(u + 1)]


def interactions_frame(spark):
    return spark.createDataFrame(INTERACTIONS, "user_id STRING, item_id STRING, rating DOUBLE, ts TIMESTAMP")


def test_leave_last_k_matches_pandas(spark):
    train, test = leave_last_k_split(interactions_frame(spark), 2)
    table = pd.DataFrame(INTERACTIONS, columns=["user_id", "item_id", "rating", "ts"])
    table = table.sort_values(["user_id", "ts", "item_id"], ascending=[True, False, False])
    table["pos"] = table.groupby("user_id").cumcount() + 1
    table["n"] = table.groupby("user_id")["item_id"].transform("size")
    want_test = set(map(tuple, table.loc[(table.pos <= 2) & (table.n > 2), ["user_id", "item_id"]].to_numpy()))
    assert {(r["user_id"], r["item_id"]) for r in test.collect()} == want_test == {
        ("u2", "i2"), ("u2", "i1"), ("u3", "i3"), ("u3", "i2")}
    assert train.count() + test.count() == len(INTERACTIONS)


def test_time_and_random_splits(spark):
    frame = interactions_frame(spark)
    cutoff = T0 + dt.timedelta(days=6)
    train, test = time_split(frame, cutoff)
    assert {r["item_id"] + r["user_id"] for r in test.collect()} == {
        item + user for user, item, _, ts in INTERACTIONS if ts >= cutoff}
    assert train.count() + test.count() == len(INTERACTIONS)
    big = spark.range(4000).selectExpr("cast(id % 97 as string) as user_id", "cast(id as string) as item_id")
    train, test = random_split(big, 0.25, seed=7)
    again = random_split(big, 0.25, seed=7)[1]
    assert test.subtract(again).count() == 0 and train.intersect(test).count() == 0
    assert math.isclose(test.count() / 4000, 0.25, abs_tol=0.03)


@pytest.mark.parametrize("splitter", ["time", "leave_last_k", "random"])
def test_validation_is_carved_out_of_the_training_rows(spark, splitter):
    rows = [(f"u{u}", f"i{i}", 1.0, T0 + dt.timedelta(days=i, hours=u)) for u in range(40) for i in range(12)]
    frame = spark.createDataFrame(rows, "user_id STRING, item_id STRING, rating DOUBLE, ts TIMESTAMP")
    config = load_config(LOCAL_CONF, [f"als.split={splitter}", "als.split_cutoff=2024-03-10",
                                      "als.test_fraction=0.25", "als.leave_k=2"]).als
    train, test = split(frame, config)
    fit_rows, validation = validation_split(train, config)
    keys = ["user_id", "item_id"]
    assert validation.count() > 0 and fit_rows.count() > 0
    assert fit_rows.count() + validation.count() == train.count()
    assert validation.select(keys).subtract(train.select(keys)).count() == 0   # never a test row
    assert validation.select(keys).intersect(test.select(keys)).count() == 0
    assert fit_rows.select(keys).intersect(validation.select(keys)).count() == 0


@pytest.mark.parametrize(("override", "message"), [
    ("als.event_weights={view: -1}", "als.event_weights.view"),
    ("als.event_weights={view: .nan}", "als.event_weights.view"),
    ("als.half_life_days=0", "als.half_life_days"),
    ("als.source=udata", "als.ratings_path"),
    ("als.grid={rnak: [1]}", "als.grid.rnak"),
    ("als.grid={rank: [2.5]}", "als.grid.rank"),
    ("als.tune_metric=rmse", "als.tune_metric"),
    ("als.top_n=0", "als.top_n"),
    ("als.mode=implicitly", "als.mode"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(LOCAL_CONF, [override])
