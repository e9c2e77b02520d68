"""Real data: the 9,835 groceries baskets mined by the job's library must give exactly the itemsets and
rules of the brute-force reference (test_basket_reference.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.basket.job import mine
from tests import test_basket_reference as ref
from tests.conftest import shared_data

pytestmark = pytest.mark.realdata


def read_groceries(path: Path) -> list[frozenset[str]]:
    """One basket per line, comma-separated item names (surrounding blanks stripped)."""
    with path.open(encoding="utf-8") as lines:
        return [frozenset(i.strip() for i in line.rstrip("\n").split(",") if i.strip()) for line in lines]


@pytest.fixture(scope="module")
def groceries(spark):
    data = read_groceries(shared_data("groceries.csv"))
    assert len(data) == 9835
    frame = ref.baskets_frame(spark, data).cache()
    yield data, frame
    frame.unpersist()


@pytest.mark.parametrize("support,confidence,itemsets,rules", [(0.001, 0.8, 13492, 410), (0.005, 0.5, 1001, 120)])
def test_groceries_itemsets_and_rules_match_brute_force(groceries, support, confidence, itemsets, rules):
    data, frame = groceries
    mined = mine(frame, len(data), max(len(b) for b in data),
                 FpGrowthConfig(min_support=support, min_confidence=confidence))
    exact = ref.frequent_itemsets(data, support)
    assert len(exact) == itemsets
    assert ref.spark_itemsets(mined.itemsets) == exact
    expected_rules = ref.rules(exact, len(data), confidence)
    assert len(expected_rules) == rules
    ref.assert_rules_match(ref.spark_rules(mined.rules), expected_rules)
    mined.unpersist()
