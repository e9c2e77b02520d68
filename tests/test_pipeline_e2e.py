"""End to end through the entry points a user runs: generate → ingest (jobs/*.py main), and the
pipeline command; checks silver tables, quarantine and the MLflow runs."""

from __future__ import annotations

import runpy
import sys

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.quality import QUARANTINE
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS, TRUTH_SEGMENTS
from shopai_spark.tables import Lakehouse

from .conftest import LOCAL_CONF, ROOT, base_overrides

SMALL = ["generate.users=300", "generate.skus=60", "generate.days=120", "generate.events_per_user=20",
         "generate.dirt_share=0.02"]


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


@pytest.fixture
def cli_args(tmp_path, mlflow_store):
    sets = [*base_overrides(tmp_path, mlflow_store), *SMALL]
    return ["--conf", str(LOCAL_CONF), *[a for s in sets for a in ("--set", s)]]


def test_generate_then_ingest_through_the_job_scripts(cli_args, make_config, spark, capsys):
    assert run_entry_point("generate_data.py", cli_args) == 0
    assert run_entry_point("ingest.py", cli_args) == 0
    out = capsys.readouterr().out
    assert "== ingest" in out and "quarantined" in out

    config = make_config(*SMALL)
    lakehouse = Lakehouse(spark, config.lakehouse)
    counts = {t.ref.name: lakehouse.read(t.ref).count() for t in (EVENTS, ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS)}
    assert all(n > 0 for n in counts.values()), counts
    assert lakehouse.read(TRUTH_SEGMENTS).count() == 300
    # dirt was quarantined, not dropped and not let through
    reasons = {r.reason for r in lakehouse.read(QUARANTINE).select(F.explode(F.split("reason", ";")).alias("reason"))
               .distinct().collect()}
    assert {"duplicate_row", "missing_user_id"} <= reasons, reasons
    assert lakehouse.read(ORDER_ITEMS.ref).filter("quantity <= 0").count() == 0

    runs = mlflow.search_runs(experiment_names=[config.tracking.experiment], order_by=["start_time ASC"])
    assert list(runs["tags.job"]) == ["generate_data", "ingest"]
    assert set(runs["status"]) == {"FINISHED"}
    ingest_run = runs.iloc[1]
    assert ingest_run["metrics.events.rows_read"] >= counts["events"]


def test_pipeline_command_runs_every_step(cli_args, capsys):
    assert run_entry_point("pipeline.py", cli_args) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "Done." in out and "mlflow ui --backend-store-uri" in out
