"""The whole pipeline through the command a user runs, ``python jobs/pipeline.py``, with customer ids
pseudonymised at ingest: progress lines, silver tables, quarantine, the MLflow runs, and no raw
customer id in any table, MLflow param, tag or artifact, or log. Every job's own entry point is tested
on the generated shop in tests/test_<domain>_e2e.py / *_job.py."""

from __future__ import annotations

import hashlib
import hmac
import re
import runpy
import sys
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import JOBS
from shopai_spark.pipeline import chosen_steps
from shopai_spark.pseudonyms import PSEUDONYM_HEX
from shopai_spark.quality import QUARANTINE
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS, TRUTH_SEGMENTS
from shopai_spark.tables import LAYERS, Lakehouse, TableRef

from .conftest import ROOT, cli_args

pytestmark = pytest.mark.e2e

SHOP = ["generate.users=150", "generate.skus=30", "generate.categories=5", "generate.days=150",
        "generate.events_per_user=10", "generate.dirt_share=0.02", "ingest.pseudonymize_key_env=SHOP_TEST_PSEUDONYM_KEY",
        "demand.models=[zero, moving_average, croston_sba]", "segments.k=3", "segments.n_init=1"]
RAW_ID = re.compile(rb"U-\d{6}")
KEY = "correct-horse-battery-staple-42"


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


@pytest.mark.heavy
def test_the_pipeline_runs_every_job_in_order_on_pseudonymised_customers(tmp_path, mlflow_store, make_config, spark,
                                                                         capsys, monkeypatch):
    monkeypatch.setenv("SHOP_TEST_PSEUDONYM_KEY", KEY)
    assert run_entry_point("pipeline.py", cli_args(tmp_path, mlflow_store, *SHOP)) == 0
    out = capsys.readouterr().out
    progress = [line.split(":")[0] for line in out.splitlines() if line.startswith("[")]
    assert progress == [f"[{i}/{len(JOBS)}] {job}" for i, job in enumerate(JOBS, 1)]
    assert "== ingest" in out and "quarantined" in out and "Done." in out and "mlflow ui --backend-store-uri" in out

    config = make_config(*SHOP)
    lakehouse = Lakehouse(spark, config.lakehouse)
    counts = {t.ref.name: lakehouse.read(t.ref).count() for t in (EVENTS, ORDERS, ORDER_ITEMS, RETURNS, PRODUCTS)}
    assert all(n > 0 for n in counts.values()), counts
    assert lakehouse.read(TRUTH_SEGMENTS).count() == 150
    reasons = {r.reason for r in lakehouse.read(QUARANTINE).select(F.explode(F.split("reason", ";")).alias("reason"))
               .distinct().collect()}
    assert {"duplicate_row", "missing_user_id"} <= reasons, reasons   # dirt quarantined, not dropped or let through
    assert lakehouse.read(ORDER_ITEMS.ref).filter("quantity <= 0").count() == 0

    tables = [TableRef(layer, path.name) for layer in LAYERS if layer != "bronze"     # bronze: the generator's truth
              for path in sorted((tmp_path / "lakehouse" / layer).glob("*"))]
    assert len(tables) >= 16
    for ref in tables:
        as_json = lakehouse.read(ref).select(F.to_json(F.struct("*")).alias("row"))
        assert as_json.filter(F.col("row").rlike(r"U-\d{6}")).isEmpty(), f"raw customer id in {ref}"
    # the same customer gets the same pseudonym: the one Python's hmac gives
    expected = "P-" + hmac.new(KEY.encode(), b"U-000001", hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
    customers = {r.user_id for r in lakehouse.read(ORDERS.ref).select("user_id").distinct().collect()}
    assert expected in customers and all(c is None or c.startswith("P-") for c in customers)

    runs = mlflow.search_runs(experiment_names=[config.tracking.experiment], order_by=["start_time ASC"],
                              output_format="list")
    assert [r.data.tags["job"] for r in runs if "mlflow.parentRunId" not in r.data.tags] == list(JOBS)
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        text = " ".join([*run.data.params.values(), *run.data.tags.values()]).encode()
        assert not RAW_ID.search(text), run.data.tags.get("job")
        artifacts = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "a")))
        for path in artifacts.rglob("*"):
            assert not (path.is_file() and RAW_ID.search(path.read_bytes())), f"raw customer id in artifact {path}"
    assert KEY not in "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))


def test_pipeline_command_rejects_an_unknown_step(tmp_path, mlflow_store, capsys):
    assert chosen_steps(["fpgrowth", "ingest"]) == ["ingest", "fpgrowth"]   # pipeline order
    assert run_entry_point("pipeline.py", [*cli_args(tmp_path, mlflow_store), "--steps", "ingest,forecast"]) == 2
    assert "unknown pipeline step(s) ['forecast']" in capsys.readouterr().err
