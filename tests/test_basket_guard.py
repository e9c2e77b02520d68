"""The search guard (basket/guard.py) against MLlib FP-Growth on baskets that repeat: items held
together by min-count baskets make all their 2^s − 1 subsets frequent, which the frequent-pair
clique estimate cannot see. Hand-made baskets, real invoices (UCI Online Retail) and the groceries
figures quoted in guard.py and docs/basket.md."""

from __future__ import annotations

import csv
import itertools
import re
from collections import defaultdict
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.basket import guard
from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.basket.mining import frequent_itemsets
from shopai_spark.errors import JobError
from tests import test_basket_reference as ref
from tests.conftest import shared_data
from tests.test_basket_groceries import read_groceries

CORE = [f"core{i:02d}" for i in range(16)]
EXTRAS = [f"extra{i}" for i in range(6)]
NOISE = [f"noise{i:02d}" for i in range(60)]


def noise_baskets() -> list[list[str]]:
    """300 baskets of 2 items out of 60: every item in 10 baskets, no pair in two."""
    return [[NOISE[i % 60], NOISE[(i + 1 + i // 60) % 60]] for i in range(300)]


def identical_baskets() -> list[list[str]]:
    """30 copies of the same 16 items."""
    return [CORE] * 30


def near_baskets() -> list[list[str]]:
    """30 baskets of the same 14 items plus two of 6 extras in turn: no basket occurs more than 5
    times, yet the 14 items with any one extra are held by 10 baskets."""
    return [CORE[:14] + [EXTRAS[j % 6], EXTRAS[(j + 1) % 6]] for j in range(30)]


def true_counts(baskets: DataFrame, n: int, counts: list[int]) -> list[int]:
    """Frequent itemsets at each min count, from one FP-Growth run at the lowest."""
    itemsets = frequent_itemsets(baskets, n, min(counts))
    row = itemsets.agg(*[F.sum((F.col("count") >= c).cast("long")) for c in counts]).first()
    return [int(v or 0) for v in row]


def suggested_support(error: guard.SearchTooLargeError) -> float:
    return float(re.search(r"Suggested: --set fpgrowth\.min_support=([0-9.]+) ", str(error)).group(1))


@pytest.mark.parametrize("repeated,reason,suggested", [
    (identical_baskets, "30 baskets share the same 16 items (min count 7)", 0.1),
    (near_baskets, "10 baskets share the same 15 items (min count 7)", 0.05),
])
def test_guard_stops_on_repeated_baskets(spark, repeated, reason, suggested):
    data = repeated() + noise_baskets()
    baskets = ref.baskets_frame(spark, data).cache()
    n, limit = len(data), 20_000
    estimates = guard.measure(baskets, n, max(len(b) for b in data), guard.support_ladder(0.02))
    with pytest.raises(guard.SearchTooLargeError, match=re.escape(reason)) as err:
        guard.check_estimates(estimates, n, limit)
    assert isinstance(err.value, JobError) and str(err.value).startswith("fpgrowth: ")
    assert suggested_support(err.value) == suggested

    requested = estimates[0]
    truth, at_suggested = true_counts(baskets, n, [requested.min_count, ref.ceil_count(suggested, n)])
    assert requested.clique_estimate < 1_000            # the pair graph alone sees almost nothing
    assert limit < requested.core_bound <= truth        # a lower bound, and over the limit
    assert at_suggested <= limit
    if repeated is identical_baskets:                   # one core: the bound is exact
        assert requested.core_bound == truth == 2 ** 16 - 1 + len(NOISE)
    baskets.unpersist()


def test_without_a_seed_the_core_bound_is_the_frequent_items_and_pairs(spark):
    """30 copies of 9 items (one under MIN_SEED_SIZE) and the noise: no basket is a seed, so no core
    is searched and the lower bound is the exact frequent items (9 + 60) and pairs (36)."""
    held = CORE[:guard.MIN_SEED_SIZE - 1]
    data = [held] * 30 + noise_baskets()
    baskets = ref.baskets_frame(spark, data).cache()
    (requested,) = guard.measure(baskets, len(data), len(held), [0.02])
    assert (requested.min_count, requested.frequent_items, requested.frequent_pairs) == (7, 69, 36)
    assert requested.cores == () and requested.core_bound == 69 + 36
    baskets.unpersist()


def test_union_of_cores_by_inclusion_exclusion():
    a, b = frozenset("abcdef"), frozenset("cdefgh")
    brute = {frozenset(s) for core in (a, b) for k in range(3, 7) for s in itertools.combinations(core, k)}
    assert guard.itemsets_inside([a, b]) == len(brute) == 2 * guard.large_subsets(6) - guard.large_subsets(4)
    assert guard.itemsets_inside([frozenset("ab"), frozenset("xyz")]) == 1
    nested = [guard.Core(frozenset("abcd"), 5), guard.Core(frozenset("abc"), 9), guard.Core(frozenset("xyz"), 5)]
    assert [sorted(c.items) for c in guard.largest_maximal(nested)] == [list("abcd"), list("xyz")]


# ------------------------------------------------------------------------------------------------
# real data


def read_invoices(path: Path, config: FpGrowthConfig) -> list[frozenset[str]]:
    """Baskets of an Online Retail export as the job builds them: the distinct StockCodes of each
    invoice, cancellations (``C`` invoices) left out, sizes within the config's bounds. Lines that
    do not give 8 fields (whole-line-quoted rows of the export) are skipped."""
    invoices: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8-sig", newline="") as lines:
        rows = csv.reader(lines)
        next(rows)
        for row in rows:
            if len(row) == 8 and not row[0].startswith("C") and row[1].strip():
                invoices[row[0]].add(row[1].strip())
    return [frozenset(items) for items in invoices.values()
            if config.min_basket_size <= len(items) <= config.max_basket_size]


@pytest.mark.realdata
def test_guard_on_real_invoices(spark):
    config = FpGrowthConfig()
    data = read_invoices(shared_data("online_retail_first8k.csv"), config)
    assert len(data) == 390
    baskets = ref.baskets_frame(spark, data).cache()
    n = len(data)
    estimates = guard.measure(baskets, n, max(len(b) for b in data), guard.support_ladder(config.min_support))
    # at the defaults (min_support 0.01, max_itemsets 100,000) the guard stops before mining
    requested = estimates[0]
    assert requested.min_support == config.min_support
    assert requested.clique_estimate < 1_000 and requested.core_bound > 250_000
    with pytest.raises(guard.SearchTooLargeError, match="4 baskets share the same 17 items") as err:
        guard.check_estimates(estimates, n, config.max_itemsets)
    suggested = suggested_support(err.value)
    assert suggested == 0.02

    truth, at_suggested = true_counts(baskets, n, [requested.min_count, ref.ceil_count(suggested, n)])
    assert (truth, at_suggested) == (262_732, 51_783)
    assert requested.core_bound <= truth and at_suggested <= config.max_itemsets
    baskets.unpersist()


@pytest.mark.realdata
def test_groceries_figures_quoted_in_the_docs(spark):
    data = read_groceries(shared_data("groceries.csv"))
    baskets = ref.baskets_frame(spark, data).cache()
    n, counts = len(data), [100, 50, 20, 10, 5]
    estimates = guard.measure(baskets, n, max(len(b) for b in data), [(c - 0.5) / n for c in counts])
    assert [e.min_count for e in estimates] == counts
    assert [round(e.estimated_itemsets) for e in estimates] == [312, 899, 4_064, 17_889, 136_072]
    assert all(e.core_bound < e.clique_estimate for e in estimates)
    assert true_counts(baskets, n, counts) == [326, 1_001, 4_223, 13_492, 49_580]
    baskets.unpersist()
