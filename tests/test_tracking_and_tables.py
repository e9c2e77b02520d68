"""MLflow run helper and Delta table helpers on a real local MLflow store and real Delta tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from pyspark.sql import functions as F

from shopai_spark.config import TrackingConfig, flatten
from shopai_spark.quality import QUARANTINE, Rule, split_valid, to_quarantine_rows, write_quarantine
from shopai_spark.tables import EmptyOutputError, Lakehouse, RowsFrom, TableRef, with_run_metadata
from shopai_spark.tracking import ensure_experiment, tracked_run


def test_tracked_run_logs_config_versions_metrics_and_artifacts(make_config, spark):
    config = make_config()
    lakehouse = Lakehouse(spark, config.lakehouse)
    ref = TableRef("silver", "things")
    lakehouse.overwrite(spark.range(3), ref)
    lakehouse.overwrite(spark.range(4), ref)
    with tracked_run(config.tracking, "unit", flatten(config.platform)) as run:
        run.log_input_versions({ref: lakehouse.version(ref), TableRef("silver", "absent"): None})
        run.log_metrics({"rows": 4, "undefined": None})
        run.log_table(pd.DataFrame({"a": [1, 2]}), "small_table")
    logged = mlflow.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["input_version.silver.things"] == "1"
    assert logged.data.params["input_version.silver.absent"] == "None"
    assert logged.data.tags["job"] == "unit"
    assert logged.data.params["spark.shuffle_partitions"] == str(config.spark.shuffle_partitions)
    assert logged.data.metrics == {"rows": 4.0}
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id)] == ["small_table.csv"]


def test_failed_body_marks_the_run_failed(make_config):
    with pytest.raises(ZeroDivisionError), tracked_run(make_config().tracking, "boom") as run:
        raise ZeroDivisionError("boom")
    assert mlflow.get_run(run.run_id).info.status == "FAILED"


ROUNDS = 8   # experiments created together, one after another (a single race is lost only now and then)


def experiment_ids_at_barrier(config: TrackingConfig, barrier, results) -> None:
    """Child process: for each of ROUNDS experiments (``<experiment>-<round>``), wait at ``barrier``
    and ``ensure_experiment``; put the ids (or the first error) on ``results``."""
    mlflow.set_tracking_uri(config.tracking_uri)
    try:
        ids = []
        for round_ in range(ROUNDS):
            barrier.wait(timeout=60)
            ids.append(ensure_experiment(dataclasses.replace(config, experiment=f"{config.experiment}-{round_}")))
        results.put(ids)
    except Exception as error:   # the parent asserts on it
        barrier.abort()   # the others' next wait raises instead of waiting for this process forever
        results.put(f"{type(error).__name__}: {error}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server (``mlflow server``, SQLite backend) on a free local port: its URL."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
             "--default-artifact-root", (folder / "artifacts").as_uri()],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("mlflow server did not start:\n" + (folder / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        mlflow.MlflowClient(tracking_uri=url).search_experiments()   # the server opens its store on a first request
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


@pytest.mark.parametrize("store", ["new SQLite store", "MLflow server"])
def test_jobs_starting_together_share_one_new_experiment(store, tmp_path, request):
    """Four processes create one new experiment at the same instant (as jobs started together on a
    fresh machine or against a shared tracking server do), ROUNDS times: each time all get the same
    experiment and none fails. Without a guard, the losers fail: on the server with
    RESOURCE_ALREADY_EXISTS, on a new SQLite store also while MLflow creates the store's tables."""
    uri = (f"sqlite:///{tmp_path / 'mlflow.db'}" if store == "new SQLite store"
           else request.getfixturevalue("mlflow_server"))
    config = TrackingConfig(tracking_uri=uri, experiment="together", artifact_location=str(tmp_path / "mlruns"))
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(4), spawn.Queue()
    children = [spawn.Process(target=experiment_ids_at_barrier, args=(config, barrier, results)) for _ in range(4)]
    for child in children:
        child.start()
    ids = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join()
    assert all(isinstance(i, list) for i in ids) and len({tuple(i) for i in ids}) == 1, ids
    stored = mlflow.MlflowClient(tracking_uri=config.tracking_uri).search_experiments()
    assert sorted(e.name for e in stored) == ["Default", *(f"together-{r}" for r in range(ROUNDS))]
    assert sorted(e.experiment_id for e in stored if e.name != "Default") == sorted(ids[0])


def test_disabled_tracking_still_gives_a_run_id(make_config):
    with tracked_run(make_config("tracking.enabled=false").tracking, "offline") as run:
        run.log_metrics({"x": 1})
    assert run.run_id.startswith("untracked-") and not run.active


def test_overwrite_refuses_empty_output_and_keeps_previous_version(make_config, spark):
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    ref = TableRef("gold", "kept")
    lakehouse.overwrite(spark.range(5), ref)
    with pytest.raises(EmptyOutputError, match="gold.kept"):
        lakehouse.overwrite(spark.range(0), ref)
    assert lakehouse.version(ref) == 0 and lakehouse.read(ref).count() == 5


def test_overwrite_replace_where_touches_only_matching_partitions(make_config, spark):
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    ref = TableRef("gold", "parts")
    df = spark.range(6).withColumn("p", F.col("id") % 3)
    lakehouse.overwrite(df, ref, partition_by=["p"])
    lakehouse.overwrite(spark.createDataFrame([(100, 2)], "id long, p long"), ref, partition_by=["p"],
                        replace=RowsFrom("p", 2))
    assert sorted(r.id for r in lakehouse.read(ref).collect()) == [0, 1, 3, 4, 100]
    assert RowsFrom("date", dt.date(2024, 3, 18)).predicate() == "`date` >= DATE'2024-03-18'"
    with pytest.raises(ValueError, match="plain column"):
        RowsFrom("date >= '2024-01-01' OR 1", 1)
    with pytest.raises(TypeError, match="date or an int"):
        RowsFrom("date", "2024-03-18")


def test_merge_is_idempotent(make_config, spark):
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    ref = TableRef("silver", "kv")
    lakehouse.ensure(ref, "k STRING NOT NULL, v INT", constraints={"v_positive": "v > 0"})
    rows = spark.createDataFrame([("a", 1), ("b", 2)], "k string, v int")
    first = lakehouse.merge(rows, ref, keys=["k"])
    version = lakehouse.version(ref)
    again = lakehouse.merge(rows, ref, keys=["k"])
    assert first["numTargetRowsInserted"] == 2
    assert again == {} and lakehouse.version(ref) == version           # nothing committed
    changed = lakehouse.merge(spark.createDataFrame([("a", 5)], "k string, v int"), ref, keys=["k"])
    assert changed["numTargetRowsUpdated"] == 1
    assert sorted(tuple(r) for r in lakehouse.read(ref).collect()) == [("a", 5), ("b", 2)]
    with pytest.raises(Exception, match="v_positive"):
        lakehouse.merge(spark.createDataFrame([("c", -1)], "k string, v int"), ref, keys=["k"])


def test_two_writers_quarantine_at_once_nothing_lost_or_doubled(make_config, spark, caplog):
    """ALS and segments (say) quarantine their rejected rows at the same instant, three times, the
    first time into no table yet: both create it (the loser waits for the winner's create), the
    losing MERGE conflicts, is retried and inserts its rows; every row lands once, and each writer
    gets its own counts back (not the other's commit's)."""
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    writers = {"als": 3, "segments": 5}   # job → rejected rows per round
    barrier, counts = threading.Barrier(len(writers)), {}

    def quarantine(job: str, round_: int) -> None:
        rejected = spark.range(writers[job]).select(F.concat(F.lit(f"{job}-{round_}-"), F.col("id")).alias("user_id"),
                                                    F.lit("bad_rating").alias("reason"))
        barrier.wait(timeout=60)
        try:
            rows = to_quarantine_rows(rejected, "interactions", job, f"run-{job}-{round_}")
            counts[job, round_] = write_quarantine(lakehouse, [rows])["numTargetRowsInserted"]
        except Exception as error:   # a thread's error would otherwise be lost: the assert shows it
            counts[job, round_] = f"{type(error).__name__}: {str(error)[:300]}"

    caplog.set_level(logging.WARNING, logger="shopai_spark.tables")
    for round_ in range(3):
        threads = [threading.Thread(target=quarantine, args=(job, round_)) for job in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert counts == {(job, r): rows for job, rows in writers.items() for r in range(3)}
    assert "conflicted with another writer" in caplog.text                 # they did race
    stored = {(r["run_id"], r["n"]) for r in
              lakehouse.read(QUARANTINE).groupBy("run_id").agg(F.count(F.lit(1)).alias("n"),
                                                               F.countDistinct("record_id").alias("d"))
              .where("n = d").collect()}
    assert stored == {(f"run-{job}-{r}", rows) for job, rows in writers.items() for r in range(3)}


def test_ensure_creates_the_table_and_its_constraints_in_one_commit(make_config, spark):
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    ref = TableRef("silver", "kinds")
    lakehouse.ensure(ref, "kind STRING NOT NULL", constraints={"known_kind": "kind IN ('a', 'it''s')"})
    assert lakehouse.version(ref) == 0
    lakehouse.merge(spark.createDataFrame([("a",), ("it's",)], "kind string"), ref, keys=["kind"])
    with pytest.raises(Exception, match="known_kind"):
        lakehouse.merge(spark.createDataFrame([("b",)], "kind string"), ref, keys=["kind"])
    lakehouse.ensure(ref, "kind STRING NOT NULL", constraints={"other": "false"})
    assert lakehouse.version(ref) == 1 and lakehouse.read(ref).count() == 2


def test_split_valid_treats_null_checks_as_violations(spark):
    df = spark.createDataFrame([(1,), (-1,), (None,)], "x int")
    good, bad = split_valid(df, [Rule("negative_x", F.col("x") < 0)])
    assert [r.x for r in good.collect()] == [1]
    assert sorted((r.x is None, r.reason) for r in bad.collect()) == [(False, "negative_x"), (True, "negative_x")]


def test_gold_metadata_columns(spark):
    out = with_run_metadata(spark.range(1), "run-1")
    assert out.columns == ["id", "run_id", "generated_at"]
    assert out.first().run_id == "run-1"


def test_relative_root_is_resolved_from_the_working_directory(spark, tmp_path, monkeypatch):
    """conf/local.yaml says ``root: lakehouse``; SQL's delta.`path` (ensure) needs an absolute path."""
    from shopai_spark.config import LakehouseConfig

    monkeypatch.chdir(tmp_path)
    lakehouse = Lakehouse(spark, LakehouseConfig(root="lakehouse"))
    ref = TableRef("quarantine", "probe")
    assert lakehouse.location(ref) == f"{tmp_path}/lakehouse/quarantine/probe"
    lakehouse.ensure(ref, "k STRING NOT NULL")
    lakehouse.merge(spark.createDataFrame([("a",)], "k string"), ref, keys=["k"])
    assert (tmp_path / "lakehouse" / "quarantine" / "probe" / "_delta_log").is_dir()
    assert Lakehouse(spark, LakehouseConfig(root="s3a://bucket/lake")).location(ref) == "s3a://bucket/lake/quarantine/probe"
