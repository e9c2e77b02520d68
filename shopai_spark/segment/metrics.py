"""Agreement between two labelings: adjusted Rand index from a contingency table.

The contingency table (label pair → count) is aggregated in Spark and collected (it has at most
k x k' rows), so scoring a million customers against planted truth never collects the customers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def _pairs(n: np.ndarray) -> np.ndarray:
    return n * (n - 1) / 2.0


def ari_from_contingency(table: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie) of a contingency matrix ``table[i, j]`` = items with
    label i in the first labeling and j in the second. 1 = same partition, ~0 = chance."""
    table = np.asarray(table, dtype=float)
    n = table.sum()
    index = _pairs(table).sum()
    rows = _pairs(table.sum(axis=1)).sum()
    cols = _pairs(table.sum(axis=0)).sum()
    expected = rows * cols / _pairs(np.array(n))
    maximum = (rows + cols) / 2.0
    if maximum == expected:  # both labelings trivial (one cluster each, or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def adjusted_rand_index(labels_a: Sequence, labels_b: Sequence) -> float:
    """ARI of two equally long label sequences."""
    _, a = np.unique(np.asarray(labels_a), return_inverse=True)
    _, b = np.unique(np.asarray(labels_b), return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    return ari_from_contingency(table)


def adjusted_rand_index_df(df: DataFrame, col_a: str, col_b: str) -> float:
    """ARI of columns ``col_a`` and ``col_b`` of ``df`` (rows with a null label are ignored)."""
    counts = (df.filter(F.col(col_a).isNotNull() & F.col(col_b).isNotNull())
              .groupBy(F.col(col_a).cast("string").alias("a"), F.col(col_b).cast("string").alias("b"))
              .count().toPandas())
    if counts.empty:
        raise ValueError(f"no rows with both {col_a} and {col_b} to compare")
    table = counts.pivot_table(index="a", columns="b", values="count", fill_value=0, aggfunc="sum")
    return ari_from_contingency(table.to_numpy())
