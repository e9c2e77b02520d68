"""Deterministic random draws as Spark columns: the same value for the same seed, salt and keys,
whatever the partitioning (``xxhash64``, not ``rand()``)."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F


def uniform(seed: int, salt: str, *keys: Column) -> Column:
    """A DOUBLE in [0, 1) that depends only on ``seed``, ``salt`` and the ``keys`` values."""
    bits = F.xxhash64(F.lit(seed), F.lit(salt), *keys).bitwiseAND(F.lit((1 << 53) - 1))
    return bits.cast("double") / float(1 << 53)


def between(u: Column, low: Column | int, high: Column | int) -> Column:
    """An INT uniform in ``low..high`` (inclusive) from ``u`` in [0, 1)."""
    return (low + F.floor(u * (high - F.lit(low) + 1))).cast("int")


def lookup(values: Sequence, index: Column) -> Column:
    """``values[index]`` as a column (``index`` 0-based)."""
    return F.element_at(F.array(*[F.lit(v) for v in values]), index.cast("int") + 1)


def choose(u: Column, shares: Sequence[float]) -> Column:
    """Index i (INT) with probability ``shares[i]`` (they sum to 1) from ``u`` in [0, 1)."""
    index = F.lit(len(shares) - 1)
    for i in reversed(range(len(shares) - 1)):
        index = F.when(u < sum(shares[:i + 1]), F.lit(i)).otherwise(index)
    return index
