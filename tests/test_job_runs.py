"""The run ledger (ops.job_runs): a job killed after any of its commits leaves, once the job starts
again, only tables of its last committed run; its MLflow run is not left RUNNING; a second run of the
job next to a live one refuses with one line; inputs are read at the versions the last committed
run wrote. Real signals: SIGTERM in this process, SIGSTOP then SIGKILL to a job's own process."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import AppConfig, main, run_job
from shopai_spark.basket import job as basket_job
from shopai_spark.errors import RunKilled
from shopai_spark.ingest.job import APPENDS, OUTPUTS
from shopai_spark.runs import JOB_RUNS, RunLedger, UndeclaredOutputError
from shopai_spark.runtime import JobContext
from shopai_spark.schemas import ORDERS
from shopai_spark.tables import Lakehouse, TableRef
from shopai_spark.tracking import JobRun

from .conftest import ROOT, cli_args
from .kill_run import signal_after_commits
from .test_ingest import ORDER_HEADER, write_raw

pytestmark = pytest.mark.e2e

INGEST_TABLES = (*OUTPUTS, *APPENDS)
RUN_COLUMNS = {"run_id", "quarantined_at", "generated_at"}   # differ between two runs on the same input


def write_second_delivery(raw: Path) -> None:
    """A second file per source: a new order, its cancellation, a line without SKU, a new event
    (the run that ingests it commits to quarantine, events, orders, order_items and returns)."""
    with open(raw / "orders" / "part-1.csv", "w", newline="") as f:
        csv.writer(f).writerows([ORDER_HEADER,
                                 ["3001", "SKU-1", "Mug", "2", "2024-02-01 10:00:00", "3.5", "U-7", "UK"],
                                 ["C3001", "SKU-1", "Mug", "-1", "2024-02-02 10:00:00", "3.5", "U-7", "UK"],
                                 ["3002", "", "Mug", "1", "2024-02-01 10:00:00", "3.5", "U-7", "UK"]])
    with open(raw / "events" / "part-1.json", "w") as f:
        f.write(json.dumps({"user_id": "U-7", "session_id": "s7", "sku": "SKU-1", "event_type": "view",
                            "event_ts": "2024-02-01T09:00:00Z", "price": 3.5}) + "\n")


def contents(lakehouse: Lakehouse, refs=INGEST_TABLES) -> dict[TableRef, list[str]]:
    """Each table's rows as sorted JSON strings (without the columns that name the run)."""
    out = {}
    for ref in refs:
        frame = lakehouse.read(ref)
        kept = [c for c in frame.columns if c not in RUN_COLUMNS]
        out[ref] = sorted(r[0] for r in frame.select(F.to_json(F.struct(*kept))).collect())
    return out


def run_statuses(experiment: str) -> dict[str, str]:
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return {run.info.run_id: run.info.status for run in runs}


def ledger_events(lakehouse: Lakehouse) -> dict[str, int]:
    return {r["event"]: r["count"] for r in lakehouse.read(JOB_RUNS).groupBy("event").count().collect()}


@pytest.fixture
def second_delivery(make_config, tmp_path, spark) -> tuple[AppConfig, Lakehouse, dict[TableRef, list[str]]]:
    """The first delivery ingested and committed, a second one on disk: (config, lakehouse, the
    committed tables' contents)."""
    write_raw(tmp_path / "raw")
    config = make_config()
    run_job("ingest", config)
    lakehouse = Lakehouse(spark, config.lakehouse)
    committed = contents(lakehouse)
    write_second_delivery(tmp_path / "raw")
    return config, lakehouse, committed


@pytest.mark.heavy
def test_sigterm_after_each_commit_leaves_the_last_committed_tables(second_delivery, monkeypatch):
    config, lakehouse, committed = second_delivery
    for after in range(1, 6):   # quarantine, events, orders, order_items, returns
        with monkeypatch.context() as patched:
            signal_after_commits(patched.setattr, after, signal.SIGTERM)
            with pytest.raises(RunKilled):
                run_job("ingest", config)
        assert contents(lakehouse) == committed, f"killed after commit {after}: tables changed"
        statuses = run_statuses(config.tracking.experiment)
        assert list(statuses.values()).count("KILLED") == after

    run_job("ingest", config)   # the next start closes the killed runs, then commits the second delivery
    assert ledger_events(lakehouse) == {"started": 7, "committed": 2, "recovered": 5}
    assert lakehouse.read(ORDERS.ref).filter("order_id = '3001'").count() == 1
    assert "RUNNING" not in run_statuses(config.tracking.experiment).values()


def wait_until_stopped(process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the job ended (exit {process.returncode}) before its kill point:\n"
                                 + process.stdout.read()[-3000:])
        if Path(f"/proc/{process.pid}/stat").read_text().split(") ")[1].startswith("T"):
            return
        time.sleep(0.5)
    raise AssertionError("the job did not reach its kill point in time")


@pytest.mark.heavy
def test_sigkill_mid_run_is_undone_by_the_next_start_and_a_rival_run_refuses(
        second_delivery, make_config, tmp_path, spark, mlflow_store, capsys):
    config, lakehouse, committed = second_delivery
    args = cli_args(tmp_path, mlflow_store, "spark.driver_memory=1g")
    frozen = subprocess.Popen([sys.executable, str(ROOT / "tests" / "kill_run.py"), "SIGSTOP", "3", "ingest", *args],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        wait_until_stopped(frozen)
        mixed = contents(lakehouse)
        assert mixed != committed, "the stopped run had not written anything yet"
        # a second run while the first one's driver is alive: one line, exit code 6, nothing written
        assert main("ingest", args) == 6
        refusal = capsys.readouterr().err.strip().splitlines()
        assert len(refusal) == 1 and "another ingest run" in refusal[0], refusal
        assert contents(lakehouse) == mixed
    finally:
        os.killpg(frozen.pid, signal.SIGKILL)
        frozen.wait()
    killed = RunLedger(lakehouse, "ingest", OUTPUTS, APPENDS, 12).open_runs()
    assert len(killed) == 1 and run_statuses(config.tracking.experiment)[killed[0].run_id] == "RUNNING"

    run_job("ingest", config)   # recovers the killed run, then ingests the same files again
    assert run_statuses(config.tracking.experiment)[killed[0].run_id] == "KILLED"
    reference = make_config(f"lakehouse.root={tmp_path / 'reference'}")
    run_job("ingest", reference)   # the same files, ingested once into an empty lakehouse
    assert contents(lakehouse) == contents(Lakehouse(spark, reference.lakehouse))


def test_inputs_are_read_at_the_versions_the_last_committed_runs_wrote(make_config, tmp_path, spark):
    write_raw(tmp_path / "raw")
    config = make_config()
    run_job("ingest", config)
    lakehouse = Lakehouse(spark, config.lakehouse)
    committed = lakehouse.version(ORDERS.ref)
    in_flight = lakehouse.read(ORDERS.ref).limit(1).withColumn("order_id", F.lit("9999"))
    lakehouse.merge(in_flight, ORDERS.ref, keys=["order_id"])   # written by a run that has not committed
    outside = TableRef("bronze", "from_outside")                  # no committed run wrote it
    lakehouse.overwrite(in_flight, outside)
    ledger = RunLedger(lakehouse, "fpgrowth", (), (), 12)
    ctx = JobContext(config=None, platform=config.platform, spark=spark, lakehouse=lakehouse,
                     run=JobRun("untracked-test", active=False), job="fpgrowth", ledger=ledger)
    assert ctx.require_inputs([ORDERS.ref], optional=[outside]) == [ORDERS.ref, outside]
    assert ctx.inputs == {ORDERS.ref: committed, outside: 0}
    assert ctx.read(ORDERS.ref).filter("order_id = '9999'").isEmpty()
    assert not lakehouse.read(ORDERS.ref).filter("order_id = '9999'").isEmpty()


def test_sigterm_after_each_gold_commit_leaves_the_committed_gold_tables(shop_lakehouse, make_config, spark,
                                                                        monkeypatch):
    run_job("fpgrowth", make_config())
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    committed = contents(lakehouse, basket_job.OUTPUTS)
    other = make_config("fpgrowth.min_support=0.02")   # other settings: the killed runs write other rows
    for after in range(1, len(basket_job.OUTPUTS) + 1):
        with monkeypatch.context() as patched:
            signal_after_commits(patched.setattr, after, signal.SIGTERM)
            with pytest.raises(RunKilled):
                run_job("fpgrowth", other)
        assert contents(lakehouse, basket_job.OUTPUTS) == committed, f"killed after commit {after}: tables changed"
    assert "RUNNING" not in run_statuses(other.tracking.experiment).values()


def test_a_job_that_writes_an_undeclared_table_cannot_commit(make_config, spark):
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    declared, shared, stray = TableRef("gold", "declared"), TableRef("ops", "shared"), TableRef("gold", "stray")
    ledger = RunLedger(lakehouse, "some_job", [declared], [shared], 12)
    ledger.begin("run-1", on_abandoned=lambda run_id: None)
    rows = spark.createDataFrame([(1,)], "x INT")
    lakehouse.overwrite(rows, declared)
    lakehouse.overwrite(rows, shared)
    ledger.commit("run-1", {})   # only its declared output and append: commits
    lakehouse.overwrite(rows, stray)
    with pytest.raises(UndeclaredOutputError, match="some_job wrote gold.stray without declaring it"):
        ledger.commit("run-1", {})
