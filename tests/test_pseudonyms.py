"""Pseudonymised customer ids: Spark's HMAC equals Python's, and with ``ingest.pseudonymize_key_env``
no raw customer id reaches a silver, gold or quarantine table or MLflow, while every job runs."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from shopai_spark.config import ConfigError
from shopai_spark.pseudonyms import PSEUDONYM_HEX, hmac_sha256
from shopai_spark.schemas import ORDERS
from shopai_spark.tables import LAYERS, Lakehouse, TableRef

from .conftest import LOCAL_CONF, cli_args
from .test_pipeline_e2e import run_entry_point

RAW_ID = re.compile(rb"U-\d{6}")
KEY = "correct-horse-battery-staple-42"


@pytest.mark.parametrize("key", [b"short-key-16byte", b"k" * 100, "clé-ünïcode-0123456".encode()])
def test_spark_hmac_equals_pythons(spark, key):
    values = ["U-000001", "17850", "é", None]
    frame = spark.createDataFrame([(v,) for v in values], "v string")
    got = [row[0] for row in frame.select(hmac_sha256(F.col("v"), key)).collect()]
    assert got == [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() if v else None for v in values]


def test_an_unset_or_short_key_is_a_config_error(monkeypatch):
    from shopai_spark.app import load_config

    monkeypatch.setenv("SHOP_TEST_SHORT_KEY", "too-short")
    for variable, message in (("SHOP_TEST_NO_KEY", "is not set"), ("SHOP_TEST_SHORT_KEY", "shorter than 16")):
        with pytest.raises(ConfigError, match=f"environment variable {variable} .*{message}"):
            load_config(LOCAL_CONF, [f"ingest.pseudonymize_key_env={variable}"])


@pytest.mark.e2e
def test_no_raw_customer_id_reaches_the_lakehouse_or_mlflow(tmp_path, mlflow_store, make_config, spark, monkeypatch):
    monkeypatch.setenv("SHOP_TEST_PSEUDONYM_KEY", KEY)
    shop = ["generate.users=150", "generate.skus=30", "generate.categories=5", "generate.days=150",
            "generate.events_per_user=10", "generate.dirt_share=0.02", "ingest.pseudonymize_key_env=SHOP_TEST_PSEUDONYM_KEY",
            "demand.models=[zero, moving_average, croston_sba]", "segments.k=3", "segments.n_init=1"]
    assert run_entry_point("pipeline.py", cli_args(tmp_path, mlflow_store, *shop)) == 0
    config = make_config(*shop)
    lakehouse = Lakehouse(spark, config.lakehouse)
    tables = [TableRef(layer, path.name) for layer in LAYERS if layer != "bronze"     # bronze: the generator's truth
              for path in sorted((tmp_path / "lakehouse" / layer).glob("*"))]
    assert len(tables) >= 15
    for ref in tables:
        as_json = lakehouse.read(ref).select(F.to_json(F.struct("*")).alias("row"))
        assert as_json.filter(F.col("row").rlike(r"U-\d{6}")).isEmpty(), f"raw customer id in {ref}"
    # the same customer gets the same pseudonym: the one Python's hmac gives
    expected = "P-" + hmac.new(KEY.encode(), b"U-000001", hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
    customers = {r.user_id for r in lakehouse.read(ORDERS.ref).select("user_id").distinct().collect()}
    assert expected in customers and all(c is None or c.startswith("P-") for c in customers)

    mlflow.set_tracking_uri(mlflow_store["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=[config.tracking.experiment], output_format="list")
    assert {r.data.tags["job"] for r in runs} >= {"ingest", "als", "fpgrowth", "segments", "demand_features"}
    for run in runs:
        text = " ".join([*run.data.params.values(), *run.data.tags.values()]).encode()
        assert not RAW_ID.search(text), run.data.tags.get("job")
        artifacts = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "a")))
        for path in artifacts.rglob("*"):
            assert not (path.is_file() and RAW_ID.search(path.read_bytes())), f"raw customer id in artifact {path}"
    assert KEY not in "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
