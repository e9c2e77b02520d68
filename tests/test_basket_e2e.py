"""fpgrowth through runtime.main on the generated shop: the generator's planted bundles are recovered;
a second run on the same inputs with the same settings writes nothing.

Heavy (``make test-heavy``): in CI the cluster test and the Connect test run this job through its
entry point on a generated shop, and the job's own tests run it on small planted data.
"""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from shopai_spark.app import main
from shopai_spark.basket.job import ASSOCIATION_RULES, FREQUENTLY_BOUGHT_TOGETHER, OUTPUTS
from shopai_spark.schemas import TRUTH_BUNDLES
from shopai_spark.tables import Lakehouse
from tests.conftest import cli_args

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]


def test_end_to_end_recovers_planted_bundles(spark, make_config, tmp_path, mlflow_store, shop_lakehouse, capsys):
    assert main("fpgrowth", cli_args(tmp_path, mlflow_store)) == 0

    lake = Lakehouse(spark, make_config().lakehouse)
    versions = {ref: lake.version(ref) for ref in OUTPUTS}
    capsys.readouterr()
    assert main("fpgrowth", cli_args(tmp_path, mlflow_store)) == 0
    assert "unchanged since run" in capsys.readouterr().out
    assert {ref: lake.version(ref) for ref in OUTPUTS} == versions   # the re-run added no Delta version

    truth = lake.read(TRUTH_BUNDLES).groupBy("bundle_id").agg(F.collect_set("sku").alias("skus")).collect()
    bundles = [set(r["skus"]) for r in truth]
    assert bundles
    strong = lake.read(ASSOCIATION_RULES).filter(F.col("lift") >= 3).collect()
    for bundle in bundles:  # every member of every bundle is predicted by the rest of its bundle
        for sku in bundle:
            assert any(r["consequent"] == [sku] and set(r["antecedent"]) <= bundle for r in strong), (bundle, sku)
    top = {r["sku"]: r["companion_sku"] for r in lake.read(FREQUENTLY_BOUGHT_TOGETHER).filter("rank = 1").collect()}
    assert all(top[sku] in bundle for bundle in bundles for sku in bundle)
