"""The pieces of the recommender comparison on tiny hand-made frames: the rules recommender against a
plain-Python reference, and the last-basket hold-out."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality

from shopai_spark.basket.baskets import last_basket_split
from shopai_spark.basket.recommend_rules import rule_recommendations
from shopai_spark.harness import shop_before
from shopai_spark.recommend.job import ShopTables

HISTORY = {"u1": {"a", "b"}, "u2": {"a"}, "u3": {"c"}, "u4": {"z"}}
RULES = [  # antecedent, consequent, confidence, lift
    (["a", "b"], "c", 0.9, 2.0),   # fires for u1 only (u2 lacks b); c is u3's own item
    (["a"], "d", 0.5, 3.0),
    (["b"], "d", 0.7, 1.5),        # d for u1: best confidence 0.7 wins over 0.5
    (["a"], "e", 0.7, 4.0),        # ties d on confidence for u1: the higher lift ranks first
    (["a"], "b", 0.8, 1.2),        # b is u1's own item: never recommended to u1
    (["c"], "f", 0.6, 2.5),        # f is excluded for u3
    (["c"], "g", 0.4, 2.5),
]
EXCLUDE = {("u3", "f")}


def python_rules(history, rules, n, exclude):
    """Plain Python: a rule fires when its antecedent is a subset of the user's items; each
    consequent keeps its best (confidence, lift); own and excluded items dropped; ranked by
    confidence, lift, item."""
    out = {}
    for user, items in history.items():
        best = {}
        for antecedent, consequent, confidence, lift in rules:
            if set(antecedent) <= items and consequent not in items and (user, consequent) not in exclude:
                best[consequent] = max(best.get(consequent, (0.0, 0.0)), (confidence, lift))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:n]
        if ranked:
            out[user] = [(item, conf, lift) for item, (conf, lift) in ranked]
    return out


def test_rule_recommendations_match_python(spark):
    history = spark.createDataFrame([(u, i) for u, items in HISTORY.items() for i in items] + [("u1", "a")],
                                    "user_id STRING, item STRING")
    rules = spark.createDataFrame([(a, [c], conf, lift) for a, c, conf, lift in RULES],
                                  "antecedent ARRAY<STRING>, consequent ARRAY<STRING>, confidence DOUBLE, lift DOUBLE")
    exclude = spark.createDataFrame(sorted(EXCLUDE), "user_id STRING, item STRING")
    for n in (1, 3, 10):
        got = rule_recommendations(history, rules, n, exclude).orderBy("user_id", "rank").collect()
        want = python_rules(HISTORY, RULES, n, EXCLUDE)
        assert {u: [(r["item"], r["confidence"], r["lift"]) for r in got if r["user_id"] == u]
                for u in {r["user_id"] for r in got}} == want
        assert all(r["rank"] == i + 1 for u in want for i, r in enumerate(x for x in got if x["user_id"] == u))
    assert python_rules(HISTORY, RULES, 10, EXCLUDE)["u1"] == [("c", 0.9, 2.0), ("e", 0.7, 4.0), ("d", 0.7, 1.5)]
    assert set(python_rules(HISTORY, RULES, 10, EXCLUDE)) == {"u1", "u2", "u3"}   # u4 fires no rule


def ts(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2024, 3, day, hour)


def test_last_basket_split(spark):
    orders = spark.createDataFrame([
        ("o1", "u1", ts(1)), ("o2", "u1", ts(5)), ("o3", "u1", ts(9)),   # o3 held out
        ("o4", "u2", ts(2)),                                              # one basket: not evaluated
        ("o5", "u3", ts(3)), ("o6", "u3", ts(3)),                         # same time: o6 (larger id) held out
        ("o7", None, ts(4)), ("o8", None, ts(8)), ("o9", " ", ts(9)),     # guests: training only
        ("o10", "u4", ts(6)), ("o11", "u4", ts(7)),                       # o10 is no usable basket
    ], "order_id STRING, user_id STRING, order_ts TIMESTAMP")
    baskets = spark.createDataFrame([(o, items, len(items)) for o, items in [
        ("o1", ["a", "b"]), ("o2", ["c"]), ("o3", ["a", "d"]), ("o4", ["e"]), ("o5", ["f"]), ("o6", ["g"]),
        ("o7", ["a"]), ("o8", ["b"]), ("o9", ["c"]), ("o11", ["h"])]], "order_id STRING, items ARRAY<STRING>, size INT")
    train, held_out = last_basket_split(baskets, orders)
    assert sorted((r["order_id"], r["user_id"]) for r in held_out.collect()) == [("o3", "u1"), ("o6", "u3")]
    assert {r["order_id"] for r in train.collect()} == {"o1", "o2", "o4", "o7", "o8", "o9", "o11"}
    assert train.join(held_out.select("order_id"), "order_id").isEmpty()
    assert train.columns == held_out.columns == ["order_id", "user_id", "order_ts", "items", "size"]


def test_training_ends_before_the_held_out_basket(spark):
    """Nothing a held-out customer did from their held-out basket on reaches training (events: from
    ``session_minutes`` before it); other customers keep every row."""
    held_out = spark.createDataFrame([("u1", ts(9))], "user_id STRING, order_ts TIMESTAMP")
    events = spark.createDataFrame([
        ("u1", "a", ts(8)), ("u1", "b", dt.datetime(2024, 3, 9, 11, 50)), ("u1", "c", ts(9, 11)),
        ("u1", "d", ts(10)), ("u2", "e", ts(20)), (None, "f", ts(20))], "user_id STRING, sku STRING, event_ts TIMESTAMP")
    lines = spark.createDataFrame([("u1", "a", ts(8)), ("u1", "b", ts(9)), ("u2", "c", ts(20))],
                                  "user_id STRING, sku STRING, order_ts TIMESTAMP")
    returns = spark.createDataFrame([("u1", "a", ts(8)), ("u1", "a", ts(12))],
                                    "user_id STRING, sku STRING, return_ts TIMESTAMP")
    cut = shop_before(ShopTables(events=events, orders=lines, lines=lines, returns=returns), held_out, 30.0)
    assert sorted(r["sku"] for r in cut.events.collect()) == ["a", "c", "e", "f"]   # 11:50 is in the visit
    assert_df_equality(cut.lines, lines.where("sku != 'b'"), ignore_row_order=True, ignore_column_order=True)
    assert sorted(r["return_ts"] for r in cut.returns.collect()) == [ts(8)]
