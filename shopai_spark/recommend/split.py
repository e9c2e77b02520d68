"""Train/test splits of interactions (user_id/user_idx, item ids, rating, ts, ...).

* ``time``: train = interactions whose latest ``ts`` is before the cut-off, test = the rest
  (cut-off from config, else the (1 - test_fraction) quantile of ``ts``); rows without ``ts``
  stay in train.
* ``leave_last_k``: each user's last k interactions (by ts, then item) are the test set; users with
  k or fewer interactions stay wholly in train.
* ``random``: a deterministic hash of (user, item, seed) sends ``test_fraction`` of rows to test, so
  a recomputed frame gives the same split (``rand()`` would not).
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


def time_cutoff(frame: DataFrame, config: AlsConfig) -> dt.datetime:
    """``als.split_cutoff`` or the (1 - test_fraction) quantile of ``ts`` (approximate, 0.1% error)."""
    if config.split_cutoff:
        return dt.datetime.fromisoformat(config.split_cutoff)
    seconds = frame.select(F.col("ts").cast("double").alias("s")).where("s IS NOT NULL") \
        .approxQuantile("s", [1.0 - config.test_fraction], 0.001)
    if not seconds:
        raise ValueError("als.split=time needs timestamps, but no interaction has a ts")
    return dt.datetime.fromtimestamp(seconds[0], tz=dt.timezone.utc).replace(tzinfo=None)


def split(frame: DataFrame, config: AlsConfig) -> tuple[DataFrame, DataFrame]:
    """(train, test) by ``config.split``."""
    if config.split == "time":
        return time_split(frame, time_cutoff(frame, config))
    if config.split == "leave_last_k":
        return leave_last_k_split(frame, config.leave_k)
    return random_split(frame, config.test_fraction, config.seed)
