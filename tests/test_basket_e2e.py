"""generate → ingest → fpgrowth through runtime.main: the generator's planted bundles are recovered."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from shopai_spark.basket.job import ASSOCIATION_RULES, FREQUENTLY_BOUGHT_TOGETHER, run
from shopai_spark.runtime import main
from shopai_spark.schemas import TRUTH_BUNDLES
from shopai_spark.tables import Lakehouse
from tests.conftest import LOCAL_CONF, base_overrides


def test_end_to_end_recovers_planted_bundles(spark, make_config, tmp_path, mlflow_store):
    generate = pytest.importorskip("shopai_spark.generate.job", reason="generator not written yet")
    from shopai_spark.ingest.job import run as ingest

    settings = [*base_overrides(tmp_path, mlflow_store), "generate.users=400", "generate.dirt_share=0.01"]
    argv = ["--conf", str(LOCAL_CONF), *[f"--set={s}" for s in settings]]
    assert main("generate_data", generate.run, argv) == 0
    assert main("ingest", ingest, argv) == 0
    assert main("fpgrowth", run, argv) == 0

    lake = Lakehouse(spark, make_config().lakehouse)
    truth = lake.read(TRUTH_BUNDLES).groupBy("bundle_id").agg(F.collect_set("sku").alias("skus")).collect()
    bundles = [set(r["skus"]) for r in truth]
    assert bundles
    strong = lake.read(ASSOCIATION_RULES).filter(F.col("lift") >= 3).collect()
    for bundle in bundles:  # every member of every bundle is predicted by the rest of its bundle
        for sku in bundle:
            assert any(r["consequent"] == [sku] and set(r["antecedent"]) <= bundle for r in strong), (bundle, sku)
    top = {r["sku"]: r["companion_sku"] for r in lake.read(FREQUENTLY_BOUGHT_TOGETHER).filter("rank = 1").collect()}
    assert all(top[sku] in bundle for bundle in bundles for sku in bundle)
