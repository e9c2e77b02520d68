"""An independent, exact reference for market-basket mining in plain Python (integers and Fractions),
used by the other basket tests; plus checks of the reference itself on hand-computed examples.

Frequent itemsets by level-wise brute force: at level k, count every k-combination of each basket's
items that occur in some frequent (k-1)-itemset (no FP-tree, no floating point).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from fractions import Fraction

import pytest
from pyspark.sql import DataFrame, SparkSession

Itemset = tuple[str, ...]


def ceil_count(min_support: float, n: int) -> int:
    """ceil(min_support × n) with min_support read as the decimal it is written as (at least 1)."""
    support = Fraction(str(min_support))
    return max(1, -(-support.numerator * n // support.denominator))


def frequent_itemsets(baskets: Sequence[frozenset[str]], min_support: float) -> dict[Itemset, int]:
    """Every itemset with count >= ceil(min_support × n): sorted tuple → count."""
    needed = ceil_count(min_support, len(baskets))
    result: dict[Itemset, int] = {}
    level_items = {item for basket in baskets for item in basket}
    size = 1
    while level_items:
        counts: Counter[Itemset] = Counter()
        for basket in baskets:
            counts.update(itertools.combinations(sorted(basket & level_items), size))
        frequent = {itemset: c for itemset, c in counts.items() if c >= needed}
        result.update(frequent)
        level_items = {item for itemset in frequent for item in itemset}
        size += 1
    return result


def rules(itemsets: dict[Itemset, int], n: int, min_confidence: float) -> dict[tuple[Itemset, str], dict]:
    """Single-consequent rules with confidence >= min_confidence (exact): (antecedent, consequent) →
    counts and exact metrics (Fractions; conviction None when confidence is 1)."""
    threshold = Fraction(str(min_confidence))
    out = {}
    for itemset, joint in itemsets.items():
        if len(itemset) < 2:
            continue
        for consequent in itemset:
            antecedent = tuple(i for i in itemset if i != consequent)
            a, b = itemsets[antecedent], itemsets[(consequent,)]
            confidence = Fraction(joint, a)
            if confidence < threshold:
                continue
            out[(antecedent, consequent)] = {
                "antecedent_count": a, "consequent_count": b, "joint_count": joint,
                "support": Fraction(joint, n), "confidence": confidence,
                "lift": Fraction(joint * n, a * b),
                "leverage": Fraction(joint, n) - Fraction(a, n) * Fraction(b, n),
                "conviction": None if joint == a else Fraction(a * (n - b), n * (a - joint)),
                "antecedent_support": Fraction(a, n), "consequent_support": Fraction(b, n),
            }
    return out


def frequently_bought_together(itemsets: dict[Itemset, int], n: int, top_k: int) -> list[tuple]:
    """(sku, companion, rank, score, pair_count, lift) from frequent pairs, best first per sku."""
    by_sku: dict[str, list[tuple]] = {}
    for pair, joint in itemsets.items():
        if len(pair) != 2:
            continue
        for x, y in (pair, pair[::-1]):
            score, lift = Fraction(joint, itemsets[(x,)]), Fraction(joint * n, itemsets[(x,)] * itemsets[(y,)])
            by_sku.setdefault(x, []).append((-score, -joint, -lift, y))
    out = []
    for sku, companions in by_sku.items():
        for rank, (score, joint, lift, y) in enumerate(sorted(companions)[:top_k], start=1):
            out.append((sku, y, rank, -score, -joint, -lift))
    return sorted(out)


def baskets_frame(spark: SparkSession, baskets: Iterable[Iterable[str]]) -> DataFrame:
    """Usable-basket frame (order_id, items sorted distinct, size) from Python baskets."""
    rows = [(f"o{i}", sorted(set(b)), len(set(b))) for i, b in enumerate(baskets)]
    return spark.createDataFrame(rows, "order_id STRING, items ARRAY<STRING>, size INT")


def spark_itemsets(itemsets: DataFrame) -> dict[Itemset, int]:
    return {tuple(r["items"]): int(r["count"]) for r in itemsets.collect()}


def spark_rules(rules: DataFrame) -> dict[tuple[Itemset, str], dict]:
    out = {}
    for r in rules.collect():
        assert len(r["consequent"]) == 1
        out[(tuple(r["antecedent"]), r["consequent"][0])] = r.asDict()
    return out


def assert_rules_match(actual: dict[tuple[Itemset, str], dict], expected: dict[tuple[Itemset, str], dict]) -> None:
    """Same rules, same integer counts, every metric equal to the exact value within 1e-12 (relative)."""
    assert set(actual) == set(expected), (sorted(set(actual) ^ set(expected))[:10])
    for key, want in expected.items():
        got = actual[key]
        for name, value in want.items():
            if isinstance(value, int):
                assert got[name] == value, (key, name)
            elif value is None:
                assert got[name] is None, (key, name)
            else:
                assert got[name] == pytest.approx(float(value), rel=1e-12, abs=1e-15), (key, name)


# ------------------------------------------------------------------------------------------------
# the reference itself, on examples computed by hand

TINY = [frozenset("ab"), frozenset("ab"), frozenset("ac"), frozenset("b"), frozenset("abc")]


def test_reference_itemsets_by_hand():
    # n = 5, min count ceil(0.4 * 5) = 2: a 4, b 4, c 2, ab 3, ac 2; bc 1 and abc 1 are not frequent
    assert frequent_itemsets(TINY, 0.4) == {("a",): 4, ("b",): 4, ("c",): 2, ("a", "b"): 3, ("a", "c"): 2}
    assert ceil_count(0.07, 100) == 7 and ceil_count(0.001, 9835) == 10 and ceil_count(0.005, 9835) == 50


def test_reference_rules_by_hand():
    found = rules(frequent_itemsets(TINY, 0.4), 5, 0.75)
    # a→b 3/4, b→a 3/4, c→a 2/2 kept; a→c 2/4 dropped
    assert set(found) == {(("a",), "b"), (("b",), "a"), (("c",), "a")}
    c_a = found[(("c",), "a")]
    assert c_a["lift"] == Fraction(5, 4) and c_a["conviction"] is None
    a_b = found[(("a",), "b")]
    assert a_b["leverage"] == Fraction(3, 5) - Fraction(16, 25)
    assert a_b["conviction"] == Fraction(4 * 1, 5 * 1)  # (1 - 4/5) / (1 - 3/4)


def test_reference_fbt_by_hand():
    fbt = frequently_bought_together(frequent_itemsets(TINY, 0.4), 5, 1)
    assert [(s, c, r) for s, c, r, *_ in fbt] == [("a", "b", 1), ("b", "a", 1), ("c", "a", 1)]
