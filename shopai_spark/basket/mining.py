"""Frequent itemsets with Spark MLlib FP-Growth, at an exactly computed minimum count.

An itemset is frequent when ``count >= min_count(min_support, n) = ceil(min_support × n)`` with
``min_support`` taken as the exact decimal it is written as. MLlib computes
``math.ceil(minSupport * n)`` in floating point (``0.07 * 100`` is ``7.000000000000001`` → 8), so it
is handed a support strictly inside ``((min_count - 1) / n, min_count / n)`` that reproduces
``min_count`` in double arithmetic; the result is also filtered on the integer count.
"""

from __future__ import annotations

import math

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.basket.config import exact_fraction

ITEMSET_COLUMNS = ("items", "size", "count", "support")


def min_count(min_support: float, n_baskets: int) -> int:
    """ceil(min_support × n_baskets), exact (at least 1)."""
    return max(1, math.ceil(exact_fraction(min_support) * n_baskets))


def mllib_support(count: int, n_baskets: int) -> float:
    """A minSupport for which MLlib's ``ceil(minSupport * n)`` (IEEE doubles, as in Python) is ``count``."""
    support = (count - 0.5) / n_baskets
    if math.ceil(support * n_baskets) != count:  # pragma: no cover - cannot happen for n < 2**52
        raise ArithmeticError(f"no double support gives min count {count} of {n_baskets} baskets")
    return support


def frequent_itemsets(baskets: DataFrame, n_baskets: int, count: int,
                      num_partitions: int | None = None, rows: int | None = None) -> DataFrame:
    """Baskets (``items``: array<string> of distinct items; persist them) → frequent itemsets.

    ``n_baskets`` is the number of baskets and ``count`` the minimum count. ``rows`` is the number of
    rows of ``baskets`` when it holds fewer rows than ``n_baskets`` (the guard's reduced baskets:
    baskets without a frequent item left out, which changes no itemset's count); MLlib is then given
    the support that gives ``count`` over ``rows``.
    Output: items (array<string>, sorted), size (int), count (long), support (double = count / n_baskets).
    """
    rows = n_baskets if rows is None else rows
    # no row: no itemset; any support keeps MLlib from dividing by zero
    fp = FPGrowth(itemsCol="items", minSupport=mllib_support(count, rows) if rows else 1.0)
    if num_partitions is not None:
        fp = fp.setNumPartitions(num_partitions)
    model = fp.fit(baskets)
    return (model.freqItemsets
            .filter(F.col("freq") >= count)
            .select(F.array_sort("items").alias("items"),
                    F.size("items").alias("size"),
                    F.col("freq").cast("long").alias("count"),
                    (F.col("freq") / F.lit(n_baskets)).alias("support")))
