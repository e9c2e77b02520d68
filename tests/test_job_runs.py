"""The run ledger (ops.job_runs): a job killed after any of its commits leaves, once the job starts
again, only tables of its last committed run; its MLflow run is not left RUNNING; a second run of the
job next to a live one refuses with one line; inputs are read at the versions the last committed
run wrote. Real signals: SIGTERM in this process, SIGSTOP then SIGKILL to a job's own process."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import JOBS as JOB_SPECS
from shopai_spark.app import main, run_job
from shopai_spark.errors import RunKilled
from shopai_spark.ingest.job import APPENDS, OUTPUTS
from shopai_spark.runs import JOB_RUNS, RunLedger, UndeclaredOutputError
from shopai_spark.runtime import JobContext
from shopai_spark.schemas import ORDERS
from shopai_spark.tables import Lakehouse, TableRef
from shopai_spark.tracking import JobRun

from .conftest import ROOT, build_shop, cli_args
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


def ledger_events(lakehouse: Lakehouse, job: str) -> dict[str, int]:
    """How many rows of each event ``job`` has in the run ledger."""
    rows = lakehouse.read(JOB_RUNS).where(F.col("job") == job).groupBy("event").count().collect()
    return {r["event"]: r["count"] for r in rows}


# A shop small enough for a kill matrix in CI (every job runs in seconds on it).
TINY_SHOP = ["generate.users=80", "generate.skus=30", "generate.categories=3", "generate.brands=5",
             "generate.days=150", "generate.events_per_user=10", "generate.bundles=2", "generate.dirt_share=0.01"]


@pytest.fixture(scope="module")
def tiny_shop(tmp_path_factory, mlflow_store, spark) -> Path:
    """The lakehouse of a TINY_SHOP after generate → ingest through the jobs' entry point."""
    return build_shop(tmp_path_factory.mktemp("tiny_shop"), mlflow_store, TINY_SHOP)


@dataclass(frozen=True)
class KillCase:
    """A job of the matrix: ``settings`` of every run (small, so that a run takes seconds), ``killed``
    the extra settings of the killed runs (so that they write other rows than the committed run), and
    the number of output commits a killed run makes."""

    job: str
    settings: tuple[str, ...] = ()
    killed: tuple[str, ...] = ()
    commits: int | None = None   # None: one per output table
    kill_after: tuple[int, ...] | None = None   # the commits to kill after; None: each in turn

    def kill_points(self) -> list[int]:
        """The output commits after which a run is killed (SIGKILL, then SIGTERM)."""
        return list(self.kill_after or range(1, (self.commits or len(JOB_SPECS[self.job].outputs)) + 1))

    def name(self) -> str:
        return self.job if self.kill_after is None else f"{self.job}-after-{'-'.join(map(str, self.kill_after))}"


# CI (make test) kills fpgrowth after its second of three commits only (the set is then a mix of two
# runs); every commit in turn takes 10 minutes there (649 s in a clean CI run) and is heavy like the
# other jobs, 3 to 11 minutes each on 2 CPUs (a retrain of als evaluates three recommenders twice
# even on 80 customers): make test-heavy, make kill-test.
FPGROWTH_KILLED = ("fpgrowth.min_support=0.02",)
KILL_CASES = [
    KillCase("fpgrowth", killed=FPGROWTH_KILLED, kill_after=(2,)),
    pytest.param(KillCase("fpgrowth", killed=FPGROWTH_KILLED), marks=pytest.mark.heavy),
    pytest.param(KillCase("demand_features", ("demand.promotions_table=bronze.truth_promotions",
                                              "demand.backtest_origins=4", "demand.selection_origins=2",
                                              "demand.models=[zero,moving_average]"), ("demand.service_level=0.9",)),
                 marks=pytest.mark.heavy),
    # the killed ingests read a second delivery: quarantine, events, orders, order_items and returns
    # change, products does not
    pytest.param(KillCase("ingest", commits=5), marks=pytest.mark.heavy),
    pytest.param(KillCase("segments", ("segments.k=3", "segments.n_init=1"), ("segments.reference_date=2030-01-01",)),
                 marks=pytest.mark.heavy),
    pytest.param(KillCase("als", ("als.rank=4", "als.max_iter=3", "als.num_blocks=1", "als.serve_from=[als]"),
                          ("als.top_n=7",)), marks=pytest.mark.heavy),
]


def wait_until_stopped(process: subprocess.Popen, timeout: float = 600) -> None:
    """Wait until ``process`` is stopped (SIGSTOP at its kill point); AssertionError when it ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the job ended (exit {process.returncode}) before its kill point:\n"
                                 + process.stdout.read()[-3000:])
        if Path(f"/proc/{process.pid}/stat").read_text().split(") ")[1].startswith("T"):
            return
        time.sleep(0.5)
    raise AssertionError("the job did not reach its kill point in time")


@contextmanager
def frozen_after_commit(job: str, commit: int, args: list[str], workdir: Path):
    """Run ``job`` as its own process (tests/kill_run.py), frozen by SIGSTOP right after its
    ``commit``-th output commit; yield while it is frozen, then SIGKILL it and its JVM."""
    frozen = subprocess.Popen([sys.executable, str(ROOT / "tests" / "kill_run.py"), "SIGSTOP", str(commit), job, *args],
                              cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        wait_until_stopped(frozen)
        yield
    finally:
        os.killpg(frozen.pid, signal.SIGKILL)
        frozen.wait()


def open_run(lakehouse: Lakehouse, job: str) -> str:
    """The run id of the one run of ``job`` that started and has not ended."""
    spec = JOB_SPECS[job]
    (run,) = RunLedger(lakehouse, job, spec.outputs, spec.appends, 12).open_runs()
    return run.run_id


def run_ids(lakehouse: Lakehouse, refs) -> set[str]:
    """The run ids the rows of ``refs`` carry (tables with a run_id column)."""
    frames = [lakehouse.read(ref) for ref in refs]
    return {r["run_id"] for frame in frames if "run_id" in frame.columns
            for r in frame.select("run_id").distinct().collect()}


@pytest.mark.kill
@pytest.mark.parametrize("case", KILL_CASES, ids=KillCase.name)
def test_killed_after_each_commit_the_next_start_leaves_the_committed_run(
        case, request, make_config, tmp_path, spark, mlflow_store, monkeypatch, capsys):
    """After a committed run, for each output commit k of the job in turn (or each of the case's
    ``kill_after``): its own process is frozen
    right after commit k (the lakehouse then holds a mix, and no row of the run killed before it) and
    a rival run next to it refuses; it is SIGKILLed, and the next one's start recovers it. Then, for
    each k in turn, a run in this process gets SIGTERM right after its commit k: every table is back
    as the committed run left it, and no MLflow run is RUNNING. A last run recovers and commits."""
    spec = JOB_SPECS[case.job]
    tables = (*spec.outputs, *spec.appends)
    if case.job == "ingest":
        write_raw(tmp_path / "raw")
    else:
        shutil.copytree(request.getfixturevalue("tiny_shop"), tmp_path / "lakehouse")
    run_job(case.job, make_config(*case.settings))
    if case.job == "ingest":
        write_second_delivery(tmp_path / "raw")
    lakehouse = Lakehouse(spark, make_config().lakehouse)
    committed = contents(lakehouse, tables)
    killed = make_config(*case.settings, *case.killed)
    experiment = killed.tracking.experiment
    args = cli_args(tmp_path, mlflow_store, *case.settings, *case.killed, "spark.driver_memory=1g")
    kills = case.kill_points()
    dead_runs: list[str] = []
    for commit in kills:   # SIGKILL: each run recovers the one killed before it
        with frozen_after_commit(case.job, commit, args, tmp_path):
            mixed = contents(lakehouse, tables)
            assert mixed != committed, f"the {case.job} run frozen after commit {commit} had not written"
            assert not set(dead_runs) & run_ids(lakehouse, tables), f"{case.job}: rows of a killed run left"
            capsys.readouterr()
            assert main(case.job, args) == 6   # a rival run next to a live one: one line, nothing written
            refusal = capsys.readouterr().err.strip().splitlines()
            assert len(refusal) == 1 and f"another {case.job} run" in refusal[0], refusal
            assert contents(lakehouse, tables) == mixed
        dead_runs.append(open_run(lakehouse, case.job))

    for commit in kills:   # SIGTERM: the first start recovers the last SIGKILLed run
        with monkeypatch.context() as patched:
            signal_after_commits(patched.setattr, commit, signal.SIGTERM)
            with pytest.raises(RunKilled):
                run_job(case.job, killed)
        assert contents(lakehouse, tables) == committed, f"{case.job} killed after commit {commit}: tables changed"
        dead_runs.append(open_run(lakehouse, case.job))   # no end record: its process may still commit
        statuses = run_statuses(experiment)
        assert all(statuses[run_id] == "KILLED" for run_id in dead_runs) and "RUNNING" not in statuses.values()

    run_job(case.job, killed)   # recovers the last SIGTERMed run, then commits
    assert not set(dead_runs) & run_ids(lakehouse, tables)
    assert ledger_events(lakehouse, case.job) == {"started": 2 + 2 * len(kills), "committed": 2,
                                                  "recovered": 2 * len(kills)}
    if case.job == "ingest":   # the same files ingested once into an empty lakehouse
        reference = make_config(f"lakehouse.root={tmp_path / 'reference'}")
        run_job("ingest", reference)
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


@pytest.mark.kill
def test_two_ingests_started_at_once_one_commits_and_the_other_refuses(make_config, tmp_path, spark, mlflow_store):
    """Two ingests into a new lakehouse, held until both reach the start of their run (both create the
    run ledger, both record their start): one commits, the other stops with one line and exit code 6,
    and the lakehouse is what one ingest alone writes."""
    write_raw(tmp_path / "raw")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    args = cli_args(tmp_path, mlflow_store, "spark.driver_memory=1g")
    runs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "kill_run.py"), "TOGETHER", str(barrier), "ingest",
                              *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = {run.pid: run.communicate(timeout=900) for run in runs}
    codes = {run.returncode: outputs[run.pid] for run in runs}
    assert sorted(codes) == [0, 6], "\n\n".join(f"exit {run.returncode}:\n{outputs[run.pid][1][-3000:]}" for run in runs)
    refusal = codes[6][1].strip().splitlines()
    assert "another ingest run" in refusal[-1] and "Traceback" not in codes[6][1], refusal

    lakehouse = Lakehouse(spark, make_config().lakehouse)
    assert ledger_events(lakehouse, "ingest")["committed"] == 1
    reference = make_config(f"lakehouse.root={tmp_path / 'reference'}")
    run_job("ingest", reference)   # the same files, ingested once
    assert contents(lakehouse) == contents(Lakehouse(spark, reference.lakehouse))
