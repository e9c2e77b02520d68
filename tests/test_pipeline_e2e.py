"""End to end through the command a user runs: ``python jobs/pipeline.py --steps ...`` (generate →
ingest → fpgrowth); checks progress lines, silver tables, quarantine and the MLflow runs. Every job's
own entry point is tested on the generated shop in tests/test_<domain>_e2e.py / *_job.py."""

from __future__ import annotations

import runpy
import sys

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.quality import QUARANTINE
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS, TRUTH_SEGMENTS
from shopai_spark.tables import Lakehouse, TableRef

from .conftest import ROOT, cli_args

pytestmark = pytest.mark.e2e

SMALL = ["generate.users=300", "generate.skus=60", "generate.days=120", "generate.events_per_user=20",
         "generate.dirt_share=0.02"]
STEPS = "generate_data,ingest,fpgrowth"


def run_entry_point(script: str, args: list[str]) -> int:
    """Run ``jobs/<script>`` as ``python jobs/<script> args`` does, in this process."""
    argv = sys.argv
    sys.argv = [str(ROOT / "jobs" / script), *args]
    try:
        runpy.run_path(str(ROOT / "jobs" / script), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code
    finally:
        sys.argv = argv
    raise AssertionError(f"{script} did not exit with a status")


def test_pipeline_command_runs_the_chosen_steps_in_order(tmp_path, mlflow_store, make_config, spark, capsys):
    assert run_entry_point("pipeline.py", [*cli_args(tmp_path, mlflow_store, *SMALL), "--steps", STEPS]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in progress] == ["[1/3] generate_data", "[2/3] ingest", "[3/3] fpgrowth"]
    assert all(" rows written in " in line for line in progress)
    assert "== ingest" in out and "quarantined" in out and "Done." in out and "mlflow ui --backend-store-uri" in out

    config = make_config(*SMALL)
    lakehouse = Lakehouse(spark, config.lakehouse)
    counts = {t.ref.name: lakehouse.read(t.ref).count() for t in (EVENTS, ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS)}
    assert all(n > 0 for n in counts.values()), counts
    assert lakehouse.read(TRUTH_SEGMENTS).count() == 300
    assert lakehouse.read(TableRef("gold", "association_rules")).count() > 0
    # dirt was quarantined, not dropped and not let through
    reasons = {r.reason for r in lakehouse.read(QUARANTINE).select(F.explode(F.split("reason", ";")).alias("reason"))
               .distinct().collect()}
    assert {"duplicate_row", "missing_user_id"} <= reasons, reasons
    assert lakehouse.read(ORDER_ITEMS.ref).filter("quantity <= 0").count() == 0

    runs = mlflow.search_runs(experiment_names=[config.tracking.experiment], order_by=["start_time ASC"])
    assert list(runs["tags.job"]) == STEPS.split(",")
    assert set(runs["status"]) == {"FINISHED"}
    assert runs.iloc[1]["metrics.events.rows_read"] >= counts["events"]


def test_pipeline_command_rejects_an_unknown_step(tmp_path, mlflow_store, capsys):
    assert run_entry_point("pipeline.py", [*cli_args(tmp_path, mlflow_store), "--steps", "ingest,forecast"]) == 2
    assert "unknown pipeline step(s) ['forecast']" in capsys.readouterr().err
