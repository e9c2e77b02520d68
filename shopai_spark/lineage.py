"""Cutting a DataFrame's lineage where a job reuses an intermediate result many times.

A DataFrame carries its whole logical plan: reading the source tables, validation, joins,
windows. ``persist`` keeps the rows but not a shorter plan, so every frame built from it is
analysed again from the sources, and Spark's analyser is slow on deep plans: on the test shop the
recommender comparison spent most of its time with the driver's CPU in the analyser, and one
ranking-metrics query took 87 s against 5 s once its inputs' lineage was cut (docs/recommend.md,
"Speed"). A checkpoint writes the rows once and gives a frame whose plan starts from them.

Reliable checkpoints (``spark.checkpoint.dir`` set, as a session this project starts has): files
a lost executor cannot take away, removed when the frame is garbage-collected
(``spark.cleaner.referenceTracking.cleanCheckpoints``). Without a checkpoint folder (a session
started elsewhere), a local checkpoint on the executors (memory, spilling to disk).
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame


def cut_lineage(frame: DataFrame) -> DataFrame:
    """The rows of ``frame``, computed now, as a frame whose plan starts from them (same columns)."""
    if frame.sparkSession.conf.get("spark.checkpoint.dir", None):
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK)
