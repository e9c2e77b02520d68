"""Train/test splits of interactions (user_id/user_idx, item ids, rating, ts, ...).

* ``time``: train = interactions whose latest ``ts`` is before the cut-off, test = the rest
  (cut-off from config, else the (1 - test_fraction) quantile of ``ts``); rows without ``ts``
  stay in train.
* ``leave_last_k``: each user's last k interactions (by ts, then item) are the test set; users with
  k or fewer interactions stay wholly in train.
* ``random``: a deterministic hash of (user, item, seed) sends ``test_fraction`` of rows to test, so
  a recomputed frame gives the same split (``rand()`` would not).

:func:`validation_split` carves the validation rows the grid is chosen on out of the training rows
with the same splitter; the test rows are scored once, by the chosen parameters.
:func:`before_cutoffs` cuts raw rows (events, order lines) at a time per user, before they become
interactions: the training side of a hold-out that is not a split of interactions (the recommender
comparison's last basket).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.recommend.config import AlsConfig

HASH_BUCKETS = 1_000_000


def time_split(frame: DataFrame, cutoff: dt.datetime) -> tuple[DataFrame, DataFrame]:
    """(rows with ts < cutoff or null ts, rows with ts >= cutoff)."""
    after = F.coalesce(F.col("ts") >= F.lit(cutoff.isoformat(sep=" ")).cast("timestamp"), F.lit(False))
    return frame.filter(~after), frame.filter(after)


def leave_last_k_split(frame: DataFrame, k: int) -> tuple[DataFrame, DataFrame]:
    """(all but each user's last k rows, the last k rows of users with more than k rows)."""
    by_user = Window.partitionBy("user_id")
    latest_first = by_user.orderBy(F.col("ts").desc_nulls_last(), F.col("item_id").desc())
    marked = frame.withColumn("_pos", F.row_number().over(latest_first)).withColumn(
        "_n", F.count(F.lit(1)).over(by_user))
    is_test = (F.col("_pos") <= k) & (F.col("_n") > k)
    return (marked.filter(~is_test).drop("_pos", "_n"), marked.filter(is_test).drop("_pos", "_n"))


def random_split(frame: DataFrame, test_fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Rows whose hash bucket of (user_id, item_id, seed) is below ``test_fraction`` go to test."""
    bucket = F.pmod(F.xxhash64("user_id", "item_id", F.lit(seed)), F.lit(HASH_BUCKETS))
    is_test = bucket < F.lit(int(test_fraction * HASH_BUCKETS))
    return frame.filter(~is_test), frame.filter(is_test)


def quantile_cutoff(frame: DataFrame, fraction: float) -> dt.datetime:
    """The (1 - ``fraction``) quantile of ``ts`` (approximate, 0.1% error)."""
    seconds = frame.select(F.col("ts").cast("double").alias("s")).where("s IS NOT NULL") \
        .approxQuantile("s", [1.0 - fraction], 0.001)
    if not seconds:
        raise ValueError("als.split=time needs timestamps, but no interaction has a ts")
    return dt.datetime.fromtimestamp(seconds[0], tz=dt.timezone.utc).replace(tzinfo=None)


def split(frame: DataFrame, config: AlsConfig) -> tuple[DataFrame, DataFrame]:
    """(train, test) by ``config.split`` (time: cut at ``als.split_cutoff`` or the quantile)."""
    if config.split == "time":
        cutoff = dt.datetime.fromisoformat(config.split_cutoff) if config.split_cutoff else None
        return time_split(frame, cutoff or quantile_cutoff(frame, config.test_fraction))
    if config.split == "leave_last_k":
        return leave_last_k_split(frame, config.leave_k)
    return random_split(frame, config.test_fraction, config.seed)


def validation_split(train: DataFrame, config: AlsConfig) -> tuple[DataFrame, DataFrame]:
    """(fit, validation) carved out of the training rows by the same splitter, so that the grid is
    chosen without the test rows: time → cut at the quantile of the training rows' ``ts``
    (``als.split_cutoff`` only places the test split); leave_last_k → each user's last k training
    rows; random → the hash with another seed (the training rows all hash above the test fraction
    under ``als.seed``)."""
    if config.split == "time":
        return time_split(train, quantile_cutoff(train, config.test_fraction))
    if config.split == "leave_last_k":
        return leave_last_k_split(train, config.leave_k)
    return random_split(train, config.test_fraction, config.seed + 1)


def before_cutoffs(frame: DataFrame, cutoffs: DataFrame, ts_col: str) -> DataFrame:
    """``frame`` (user_id, ``ts_col``, ...) without the rows of a user of ``cutoffs`` (user_id,
    cutoff_ts; one row per user) at or after that user's ``cutoff_ts``; the rows of other users
    (null user_id included) are all kept."""
    cut = frame.join(cutoffs.select("user_id", "cutoff_ts"), "user_id", "left")
    return cut.where(F.col("cutoff_ts").isNull() | (F.col(ts_col) < F.col("cutoff_ts"))).drop("cutoff_ts")
