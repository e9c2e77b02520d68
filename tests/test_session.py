"""The session module: what a session started here is given, what a reused one is left with."""

from __future__ import annotations

from pathlib import Path

from shopai_spark.config import SparkConfig
from shopai_spark.session import delta_package, describe, is_connect, session_for
from shopai_spark.tables import Lakehouse, TableRef
from tests.conftest import LOCAL_CONF


def test_started_session_has_the_checkpoint_dir_as_startup_config(spark):
    # the fixture session was started by get_spark with checkpoint_dir: ALS truncates lineage there
    configured = spark.conf.get("spark.checkpoint.dir")
    assert configured.endswith("checkpoints")
    assert Path(spark.sparkContext.getCheckpointDir().removeprefix("file:")).parent == Path(configured).resolve()
    assert spark.conf.get("spark.log.level") == "WARN"


def test_session_for_leaves_an_active_session_running(spark):
    with session_for(SparkConfig(checkpoint_dir=None)) as reused:
        assert reused is spark
    assert spark.range(3).count() == 3   # not stopped: it was active before


def test_classic_session_is_described_as_such(spark):
    assert not is_connect(spark)
    assert describe(spark).startswith("classic, master=local[2], Spark ")


def test_delta_package_matches_the_installed_pyspark_line():
    import pyspark

    group, artifact, version = delta_package().split(":")
    assert group == "io.delta" and artifact.startswith("delta-spark_")
    if pyspark.__version__.startswith("4.2"):
        assert artifact == "delta-spark_4.2_2.13"


def test_version_of_a_folder_that_is_not_delta_is_none(spark, tmp_path):
    from shopai_spark.app import load_config

    lakehouse = Lakehouse(spark, load_config(LOCAL_CONF, [f"lakehouse.root={tmp_path}"]).lakehouse)
    spark.range(2).write.parquet(str(tmp_path / "silver" / "plain_parquet"))
    assert lakehouse.version(TableRef("silver", "plain_parquet")) is None
    assert lakehouse.version(TableRef("silver", "nothing_here")) is None
    spark.range(2).write.format("delta").save(str(tmp_path / "silver" / "a_delta_table"))
    assert lakehouse.version(TableRef("silver", "a_delta_table")) == 0
