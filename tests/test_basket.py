"""Basket building, exact thresholds, rule metrics, FBT and the guard, against the plain-Python
reference in test_basket_reference.py."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from shopai_spark.basket import guard
from shopai_spark.basket.baskets import basket_counts, order_baskets, usable
from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.basket.job import mine
from shopai_spark.basket.mining import min_count, mllib_support
from shopai_spark.basket.rules import meets_confidence
from shopai_spark.config import ConfigError
from tests import test_basket_reference as ref

ORDERS_DDL = "order_id STRING, user_id STRING, order_ts TIMESTAMP, country STRING"
ITEMS_DDL = "order_id STRING, sku STRING, quantity INT, unit_price DOUBLE"


def ts(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, 12, 0)


@pytest.fixture
def dirty_orders(spark):
    """o1 normal with a duplicate line, o2 null SKU + one SKU, o3 no lines, o4 only a null SKU,
    o5 four SKUs (oversize at max 3), o6 one SKU (small at min 2), o7 outside Jan 2..9; x9 has no order."""
    orders = spark.createDataFrame([(f"o{i}", "u", ts(i + 1) if i < 7 else ts(20), "DE") for i in range(1, 8)],
                                   ORDERS_DDL)
    lines = [("o1", "A", 1, 1.0), ("o1", "B", 1, 1.0), ("o1", "A", 2, 1.0),
             ("o2", None, 1, 1.0), ("o2", "C", 1, 1.0),
             ("o4", None, 1, 1.0),
             ("o5", "A", 1, 1.0), ("o5", "B", 1, 1.0), ("o5", "C", 1, 1.0), ("o5", "D", 1, 1.0),
             ("o6", "D", 1, 1.0), ("o7", "A", 1, 1.0), ("o7", "B", 1, 1.0), ("x9", "A", 1, 1.0)]
    return orders, spark.createDataFrame(lines, ITEMS_DDL)


def test_order_baskets_counts_every_kind_of_bad_basket(spark, dirty_orders):
    orders, items = dirty_orders
    config = FpGrowthConfig(min_basket_size=2, max_basket_size=3, window_start="2024-01-02", window_end="2024-01-10")
    status = order_baskets(items, orders, config)
    expected = spark.createDataFrame([
        ("o1", ["A", "B"], 2, 0, 1, 0, "ok"),
        ("o2", ["C"], 1, 1, 0, 0, "small"),
        ("o3", [], 0, 0, 0, 0, "empty"),
        ("o4", [], 0, 1, 0, 0, "empty"),
        ("o5", ["A", "B", "C", "D"], 4, 0, 0, 0, "oversize"),
        ("o6", ["D"], 1, 0, 0, 0, "small"),
    ], "order_id STRING, items ARRAY<STRING>, size INT, null_sku_lines LONG, duplicate_lines LONG, "
       "unmapped_lines LONG, status STRING")
    assert_df_equality(status, expected, ignore_row_order=True, ignore_nullable=True)
    assert basket_counts(status) == {"orders": 6, "baskets": 1, "empty_baskets": 2, "small_baskets": 2,
                                     "oversize_baskets": 1, "null_sku_lines": 2, "duplicate_lines": 1,
                                     "unmapped_lines": 0, "max_basket_size": 2}
    assert [r["order_id"] for r in usable(status).collect()] == ["o1"]


def test_window_days_and_category_level(spark, dirty_orders):
    orders, items = dirty_orders
    products = spark.createDataFrame([("A", "a", "dairy"), ("B", "b", "dairy"), ("C", "c", "bakery"),
                                      ("D", "d", None)], "sku STRING, title STRING, category STRING")
    config = FpGrowthConfig(level="category", window_days=3)  # latest order Jan 20 → Jan 18..20: o7 only
    status = order_baskets(items, orders, config, products).collect()
    assert [(r["order_id"], r["items"]) for r in status] == [("o7", ["dairy"])]
    config = FpGrowthConfig(level="category")
    got = {r["order_id"]: (r["items"], r["unmapped_lines"]) for r in order_baskets(items, orders, config, products)
           .collect()}
    assert got["o5"] == (["bakery", "dairy"], 1) and got["o6"] == ([], 1) and got["o1"] == (["dairy"], 0)


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match="fpgrowth.min_support"):
        FpGrowthConfig(min_support=0.0)
    with pytest.raises(ValueError, match="fpgrowth.window_days"):
        FpGrowthConfig(window_days=3, window_start="2024-01-01")
    with pytest.raises(ValueError, match="fpgrowth.min_basket_size"):
        FpGrowthConfig(min_basket_size=5, max_basket_size=4)


def test_config_from_yaml(make_config):
    assert make_config("fpgrowth.min_support=0.02").fpgrowth.min_support == 0.02
    with pytest.raises(ConfigError, match="fpgrowth.min_confidence"):
        make_config("fpgrowth.min_confidence=1.5")


# ------------------------------------------------------------------------------------------------
# exact thresholds

# 100 baskets: A in 5 (4 with B) → conf(A→B) = 4/5, exactly 0.8; D in exactly 7; E in 6.
EDGE = [{"A", "B"}] * 4 + [{"A"}] + [{"D"}] * 7 + [{"E"}] * 6 + [{"F"}] * 3 + [{"G"}] * 79


def test_min_count_is_exact_where_floats_are_not():
    assert min_count(0.07, 100) == 7          # float: ceil(0.07 * 100) = ceil(7.000000000000001) = 8
    assert min_count(0.001, 9835) == 10 and min_count(0.005, 9835) == 50
    assert min_count(1e-9, 100) == 1
    for count, n in [(7, 100), (10, 9835), (1, 1), (999_999, 1_000_000)]:
        assert math.ceil(mllib_support(count, n) * n) == count


def test_confidence_threshold_in_integers(spark):
    frame = spark.createDataFrame([(4, 5), (7, 10), (69_999, 100_000), (3, 4)], "j LONG, a LONG")
    kept = [(r["j"], r["a"]) for r in frame.filter(meets_confidence(F.col("j"), F.col("a"), 0.7)).collect()]
    assert kept == [(4, 5), (7, 10), (3, 4)]
    assert (4 / 100) / (5 / 100) < 0.8  # the float detour a support ratio takes would lose A→B below


@pytest.mark.parametrize("support,confidence", [(0.04, 0.8), (0.04, 0.81), (0.07, 0.5)])
def test_rules_exactly_at_the_thresholds(spark, support, confidence):
    baskets = ref.baskets_frame(spark, EDGE).cache()
    mined = mine(baskets, len(EDGE), 2, FpGrowthConfig(min_support=support, min_confidence=confidence))
    expected_itemsets = ref.frequent_itemsets([frozenset(b) for b in EDGE], support)
    assert ref.spark_itemsets(mined.itemsets) == expected_itemsets
    if support == 0.07:
        assert ("D",) in expected_itemsets and ("E",) not in expected_itemsets
    expected_rules = ref.rules(expected_itemsets, len(EDGE), confidence)
    assert ((("A",), "B") in expected_rules) == (confidence == 0.8)
    ref.assert_rules_match(ref.spark_rules(mined.rules), expected_rules)


# ------------------------------------------------------------------------------------------------
# metrics and FBT on random data


def random_baskets(seed: int, n: int, skus: int) -> list[set[str]]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(skus)]
    out = []
    for _ in range(n):
        basket = set(rng.choices([f"S{i:02d}" for i in range(skus)], weights, k=rng.randint(1, 6)))
        if rng.random() < 0.2:
            basket |= {"S07", "S08", "S09"}
        out.append(basket)
    return out


def test_itemsets_rules_metrics_and_fbt_match_reference(spark):
    data = random_baskets(1, 400, 14)
    baskets = ref.baskets_frame(spark, data).cache()
    config = FpGrowthConfig(min_support=0.03, min_confidence=0.3, fbt_top_k=3)
    names = spark.createDataFrame([("S07", "Seven")], "item STRING, name STRING")
    mined = mine(baskets, len(data), 6, config, names)
    exact = ref.frequent_itemsets([frozenset(b) for b in data], 0.03)
    got = ref.spark_itemsets(mined.itemsets)
    assert got == exact and any(len(k) >= 3 for k in exact)
    for row in mined.itemsets.collect():
        assert row["size"] == len(row["items"]) and row["support"] == pytest.approx(row["count"] / len(data), rel=1e-15)
    expected_rules = ref.rules(exact, len(data), 0.3)
    actual = ref.spark_rules(mined.rules)
    ref.assert_rules_match(actual, expected_rules)
    assert any(r["conviction"] is None for r in actual.values())
    assert mined.rules_by_length == {k: sum(1 for (a, _) in expected_rules if len(a) + 1 == k)
                                     for k in {len(a) + 1 for (a, _) in expected_rules}}
    sample = actual[(("S07", "S08"), "S09")]
    assert sample["antecedent_names"] == ["Seven", "S08"] and sample["rule_text"] == "{Seven, S08} => {S09}"

    fbt = sorted((r["sku"], r["companion_sku"], r["rank"], r["score"], r["pair_count"], r["lift"])
                 for r in mined.fbt.collect())
    want = ref.frequently_bought_together(exact, len(data), 3)
    assert [row[:3] + (row[4],) for row in fbt] == [row[:3] + (row[4],) for row in want]
    for got_row, want_row in zip(fbt, want, strict=True):
        assert got_row[3] == pytest.approx(float(want_row[3]), rel=1e-12)
        assert got_row[5] == pytest.approx(float(want_row[5]), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# guard


def test_clique_estimate_exact_on_complete_graph_and_ladder():
    assert guard.estimate_itemsets(5, 10, 5) == pytest.approx(31)       # complete graph: 2^5 - 1
    assert guard.estimate_itemsets(5, 10, 2) == 15
    assert guard.estimate_itemsets(3, 0, 3) == 3
    assert guard.support_ladder(0.001)[:4] == [0.001, 0.0015, 0.002, 0.003] and guard.support_ladder(0.5) == [0.5, 0.7, 1.0]


def test_guard_counts_items_and_pairs_exactly(spark):
    data = random_baskets(2, 300, 12)
    baskets = ref.baskets_frame(spark, data).cache()
    exact = ref.frequent_itemsets([frozenset(b) for b in data], 0.05)
    (estimate,) = guard.measure(baskets, len(data), 6, [0.05])
    assert estimate.min_count == ref.ceil_count(0.05, len(data))
    assert estimate.frequent_items == sum(1 for k in exact if len(k) == 1)
    assert estimate.frequent_pairs == sum(1 for k in exact if len(k) == 2)


def test_guard_trips_with_a_workable_suggestion(spark):
    data = random_baskets(3, 300, 12)
    baskets = ref.baskets_frame(spark, data).cache()
    with pytest.raises(guard.SearchTooLargeError, match=r"Suggested: --set fpgrowth.min_support=0\.\d+") as err:
        guard.check_search(baskets, len(data), 9, 0.004, max_itemsets=60)
    suggested = float(str(err.value).split("fpgrowth.min_support=")[2].split(" ")[0])
    assert suggested > 0.004
    estimate, reduced = guard.check_search(baskets, len(data), 9, suggested, max_itemsets=60)
    assert estimate.estimated_itemsets <= 60 and reduced.rows <= len(data)
    reduced.unpersist()
