"""The real Online Retail sample (../shared/data/online_retail_first8k.csv) end to end with
conf/online_retail.yaml, as docs/real-data.md walks through it: ingest with only the order export,
then als, fpgrowth (at the support the guard suggests), segments and demand_features. Skipped where
../shared is absent; the quirks themselves are covered without it in test_ingest_real_world.py."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.app import main
from shopai_spark.config import LakehouseConfig
from shopai_spark.quality import QUARANTINE
from shopai_spark.schemas import ORDER_ITEMS, ORDERS, RETURNS
from shopai_spark.tables import Lakehouse, TableRef
from tests.conftest import ROOT, shared_data

pytestmark = pytest.mark.realdata
CONF = ROOT / "conf" / "online_retail.yaml"


def args(tmp: Path, mlflow_store: dict[str, str], export: Path, *overrides: str) -> list[str]:
    sets = [f"ingest.orders.path={export}", f"lakehouse.root={tmp / 'lakehouse'}",
            f"tracking.tracking_uri={mlflow_store['tracking_uri']}",
            f"tracking.artifact_location={mlflow_store['artifact_location']}",
            f"tracking.experiment=online-retail-{tmp.name}", f"spark.checkpoint_dir={tmp / 'checkpoints'}",
            *overrides]
    return ["--conf", str(CONF), *[a for s in sets for a in ("--set", s)]]


def export_rows(path: Path) -> int:
    """Data rows of the export as a person counts them: non-blank lines after the header."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        return sum(1 for line in f if line.strip()) - 1


@pytest.fixture(scope="module")
def retail(tmp_path_factory, mlflow_store, spark):
    export = shared_data("online_retail_first8k.csv")
    tmp = tmp_path_factory.mktemp("online_retail")
    assert main("ingest", args(tmp, mlflow_store, export)) == 0
    return tmp, export, Lakehouse(spark, LakehouseConfig(root=str(tmp / "lakehouse")))


def test_every_line_of_the_export_is_in_silver_or_quarantine(retail):
    _, export, lakehouse = retail
    in_silver = sum(lakehouse.read(t.ref).agg(F.sum("source_lines")).first()[0] for t in (ORDER_ITEMS, RETURNS))
    quarantined = lakehouse.read(QUARANTINE).where("source = 'raw.orders'").count()
    assert in_silver + quarantined == export_rows(export) == 8373


def test_no_silver_row_holds_a_fragment_of_a_quoted_line(retail):
    _, export, lakehouse = retail
    orders = lakehouse.read(ORDERS.ref)
    assert orders.where(~F.col("order_id").rlike(r"^\d{6}$")).count() == 0
    assert orders.where(~F.col("user_id").rlike(r"^\d{5}$")).count() == 0   # 17850.0 normalised
    items = lakehouse.read(ORDER_ITEMS.ref)
    assert items.where(F.col("sku").contains(",") | F.col("sku").contains('"')).count() == 0
    with open(export, encoding="utf-8-sig", newline="") as f:
        quoted = [next(csv.reader([row[0]])) for row in csv.reader(f) if len(row) == 1]
    assert len(quoted) >= 100
    keys = {(r.order_id, r.sku) for r in items.select("order_id", "sku").collect()}
    assert sum((q[0], q[1]) in keys for q in quoted) >= 0.9 * len(quoted)  # the rest: duplicates etc.


def test_guest_checkouts_are_orders(retail):
    _, _, lakehouse = retail
    guests = lakehouse.read(ORDERS.ref).where(F.col("user_id").isNull())
    assert guests.count() > 10
    assert lakehouse.read(ORDER_ITEMS.ref).join(guests, "order_id").count() > 1000


@pytest.mark.heavy
def test_all_four_jobs_run_on_the_orders_only_export(retail, mlflow_store, capsys):
    tmp, export, lakehouse = retail
    assert main("als", args(tmp, mlflow_store, export)) == 0
    assert lakehouse.read(TableRef("gold", "user_recommendations")).count() > 0

    code = main("fpgrowth", args(tmp, mlflow_store, export))
    if code != 0:  # the guard stopped the default support: take its suggestion
        suggested = re.search(r"fpgrowth\.min_support=([0-9.eE-]+)", capsys.readouterr().err)
        assert suggested, "the guard must suggest a support"
        code = main("fpgrowth", args(tmp, mlflow_store, export, f"fpgrowth.min_support={suggested[1]}"))
    assert code == 0
    assert lakehouse.read(TableRef("gold", "association_rules")).count() > 0

    assert main("segments", args(tmp, mlflow_store, export)) == 0
    segmented = lakehouse.read(TableRef("gold", "customer_segments"))
    assert segmented.where(F.col("user_id").isNull()).count() == 0

    assert main("demand_features", args(tmp, mlflow_store, export)) == 0
    panel = lakehouse.read(TableRef("gold", "sku_demand_features"))
    sold = lakehouse.read(ORDER_ITEMS.ref).agg(F.sum("quantity")).first()[0]
    assert panel.agg(F.sum("units")).first()[0] == sold   # guest orders count in demand
    runs = mlflow.search_runs(experiment_names=[f"online-retail-{tmp.name}"])
    assert set(runs["tags.mlflow.runName"]) >= {"ingest", "als", "fpgrowth", "segments", "demand_features"}
    mined = runs[(runs["tags.mlflow.runName"] == "fpgrowth") & (runs["status"] == "FINISHED")].iloc[0]
    orders = lakehouse.read(ORDERS.ref)
    assert mined["metrics.baskets.orders"] == orders.count()   # guest orders are baskets too
    assert orders.where(F.col("user_id").isNull()).count() > 0
