"""The one place a SparkSession is made.

* An active session exists (Databricks classic or serverless, a notebook, a test fixture): reuse
  it, change nothing. It may be a classic or a Spark Connect session: the library uses only the
  DataFrame, SQL and ``pyspark.ml`` APIs both have (no SparkContext, RDD or JVM access).
* ``spark.remote`` set (``sc://host:15002``): a Spark Connect session on that server. Delta, the
  checkpoint folder and the Python environment of UDFs are the server's (see README).
* ``spark.master`` is null (``spark-submit`` on a cluster): build without a master so spark-submit's
  ``--master`` applies; Delta jars must come from ``--packages``/``--jars`` (see README).
* ``spark.master`` set (laptop, CI): local session with the Delta jars resolved through
  ``configure_spark_with_delta_pip`` (Ivy, cached in ``~/.ivy2`` by ``make setup``).

``python -m shopai_spark.session`` starts and stops a local Delta session once: ``make setup`` uses
it to warm the jar cache so tests never download mid-run.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

from shopai_spark.config import SparkConfig

log = logging.getLogger(__name__)

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -Xss16m",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC -Xss16m",
    "spark.sql.adaptive.enabled": "true",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.warehouse.dir": "spark-warehouse",
    "spark.ui.showConsoleProgress": "false",   # no stage bars between the step lines
    # one task = one core: numpy in a Python worker must not start a BLAS thread per core on top
    # (the fast top-N's matrix products ran 2 workers x 2 OpenBLAS threads on 2 cores)
    "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
    "spark.executorEnv.OMP_NUM_THREADS": "1",
    "spark.executorEnv.MKL_NUM_THREADS": "1",
}


def get_spark(config: SparkConfig) -> SparkSession:
    """Return the active SparkSession, or build one as described in the module docstring."""
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info("reusing active SparkSession (%s)", describe(active))
        if config.checkpoint_dir and not active.conf.get("spark.checkpoint.dir", None):
            log.warning("spark.checkpoint_dir=%s not applied: the running session has no spark.checkpoint.dir "
                        "and it cannot be set after start (set it in the cluster's Spark config)",
                        config.checkpoint_dir)
        return active
    if config.remote is not None:
        spark = SparkSession.builder.remote(config.remote).appName(config.app_name).getOrCreate()
        for key, value in {"spark.sql.shuffle.partitions": str(config.shuffle_partitions), **config.conf}.items():
            spark.conf.set(key, value)
        log.info("connected to Spark Connect at %s (%s)", config.remote, describe(spark))
        return spark

    builder = SparkSession.builder.appName(config.app_name)
    settings = dict(DELTA_CONF)
    settings["spark.sql.shuffle.partitions"] = str(config.shuffle_partitions)
    settings["spark.log.level"] = config.log_level
    if config.checkpoint_dir:
        settings["spark.checkpoint.dir"] = config.checkpoint_dir
        settings["spark.cleaner.referenceTracking.cleanCheckpoints"] = "true"   # see lineage.py
    if config.master is not None:
        # Python workers must run the same interpreter (the project's venv), not whatever python3 is on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(config.master)
        settings.update(LOCAL_DEFAULTS)
        settings["spark.ui.enabled"] = str(config.ui_enabled).lower()
        settings["spark.driver.memory"] = config.driver_memory
        settings["spark.jars.packages"] = delta_package()
    settings.update(config.conf)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    log.info("started SparkSession (%s)", describe(spark))
    return spark


@contextmanager
def session_for(config: SparkConfig) -> Iterator[SparkSession]:
    """:func:`get_spark` for a process entry point: a Spark Connect session started here is stopped
    on the way out (the client otherwise waits on the server while exiting and the server keeps its
    state); a classic session ends with its process, and a session that was already active
    (Databricks, a notebook, a test) is left running."""
    started_here = config.remote is not None and SparkSession.getActiveSession() is None
    spark = get_spark(config)
    try:
        yield spark
    finally:
        if started_here:
            spark.stop()


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (serverless, shared clusters, ``spark.remote``)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def describe(spark: SparkSession) -> str:
    """``"classic, master=local[2], Spark 4.2.0"`` or ``"Spark Connect, Spark 4.2.0"`` for logs."""
    if is_connect(spark):
        return f"Spark Connect, Spark {spark.version}"
    return f"classic, master={spark.conf.get('spark.master', '?')}, Spark {spark.version}"


def delta_package() -> str:
    """Maven coordinates of the Delta jars matching the installed delta-spark and pyspark, as
    ``configure_spark_with_delta_pip`` resolves them (``io.delta:delta-spark_4.2_2.13:4.4.0``)."""
    from delta import configure_spark_with_delta_pip

    return configure_spark_with_delta_pip(SparkSession.Builder())._options["spark.jars.packages"]


def warm_delta_jars() -> None:
    """Start and stop a local Delta session so Ivy caches the Delta jars."""
    import tempfile

    spark = get_spark(SparkConfig(master="local[1]", ui_enabled=False, checkpoint_dir=None))
    with tempfile.TemporaryDirectory() as tmp:
        spark.range(3).write.format("delta").save(f"{tmp}/warm")
        rows = spark.read.format("delta").load(f"{tmp}/warm").count()
    spark.stop()
    log.warning("Delta jars cached; test write read back %d rows", rows)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warm_delta_jars()
