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

from shopai_spark.app import JOBS as JOB_SPECS
from shopai_spark.app import AppConfig, main, run_job
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


# gold jobs on the generated shop: (job, settings of every run, settings that make the killed runs
# write other rows). fpgrowth runs in CI; the others are minutes each (make test-heavy).
DEMAND_SMALL = ["demand.promotions_table=bronze.truth_promotions", "demand.gbt_max_iter=5", "demand.backtest_origins=6",
                "demand.selection_origins=3", "demand.models=[zero,moving_average,seasonal_naive,croston_sba,gbt]"]
GOLD_JOBS = [
    pytest.param("fpgrowth", [], ["fpgrowth.min_support=0.02"], id="fpgrowth"),
    pytest.param("als", ["als.rank=4", "als.max_iter=4", "als.num_blocks=2"], ["als.top_n=7"], id="als",
                 marks=pytest.mark.heavy),
    pytest.param("segments", ["segments.k_max=4", "segments.n_init=1"], ["segments.reference_date=2030-01-01"],
                 id="segments",
                 marks=pytest.mark.heavy),
    pytest.param("demand_features", DEMAND_SMALL, ["demand.service_level=0.9"], id="demand_features",
                 marks=pytest.mark.heavy),
]


def gold_tables(job: str) -> tuple[TableRef, ...]:
    """What a gold job's run may change: its outputs and the tables it appends to."""
    spec = JOB_SPECS[job]
    return (*spec.outputs, *spec.appends)


@pytest.mark.parametrize(("job", "settings", "other"), GOLD_JOBS)
def test_sigterm_after_each_gold_commit_leaves_the_committed_gold_tables(job, settings, other, shop_lakehouse,
                                                                        make_config, spark, monkeypatch):
    run_job(job, make_config(*settings))
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    tables = gold_tables(job)
    committed = contents(lakehouse, tables)
    killed = make_config(*settings, *other)   # other settings: the killed runs write other rows
    for after in range(1, len(JOB_SPECS[job].outputs) + 1):
        with monkeypatch.context() as patched:
            signal_after_commits(patched.setattr, after, signal.SIGTERM)
            with pytest.raises(RunKilled):
                run_job(job, killed)
        assert contents(lakehouse, tables) == committed, f"{job} killed after commit {after}: tables changed"
    assert "RUNNING" not in run_statuses(killed.tracking.experiment).values()


@pytest.mark.heavy
@pytest.mark.parametrize(("job", "settings", "other"), GOLD_JOBS)
def test_sigkill_after_a_gold_commit_is_undone_by_the_next_start(job, settings, other, shop_lakehouse, make_config,
                                                                 tmp_path, spark, mlflow_store):
    run_job(job, make_config(*settings))
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    tables = gold_tables(job)
    committed = contents(lakehouse, tables)
    args = cli_args(tmp_path, mlflow_store, *settings, *other, "spark.driver_memory=1g")
    last = str(len(JOB_SPECS[job].outputs))   # frozen after its last output, before its commit record
    frozen = subprocess.Popen([sys.executable, str(ROOT / "tests" / "kill_run.py"), "SIGSTOP", last, job, *args],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        wait_until_stopped(frozen)
        assert contents(lakehouse, tables) != committed, f"the stopped {job} run had not written anything yet"
    finally:
        os.killpg(frozen.pid, signal.SIGKILL)
        frozen.wait()
    spec = JOB_SPECS[job]
    (dead,) = RunLedger(lakehouse, job, spec.outputs, spec.appends, 12).open_runs()

    run_job(job, make_config(*settings))   # the next start restores the killed run's tables, then runs
    assert run_statuses(make_config().tracking.experiment)[dead.run_id] == "KILLED"
    for ref in tables:
        written_by = {r["run_id"] for r in lakehouse.read(ref).select("run_id").distinct().collect()}
        assert dead.run_id not in written_by, f"{ref} still holds rows of the killed {job} run"
    events = lakehouse.read(JOB_RUNS).where(F.col("job") == job).groupBy("event").count().collect()
    assert {r["event"]: r["count"] for r in events} == {"started": 3, "committed": 2, "recovered": 1}


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
