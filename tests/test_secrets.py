"""Secrets: config values from the environment, masked in MLflow params and in the log."""

from __future__ import annotations

import mlflow
import pytest

from shopai_spark import secrets
from shopai_spark.app import main
from shopai_spark.config import ConfigError, read_config
from tests.conftest import cli_args

TINY_SHOP = ("generate.users=30", "generate.skus=12", "generate.categories=3", "generate.bundles=1",
             "generate.days=20", "generate.events_per_user=4")


def test_values_come_from_the_environment_and_are_remembered(monkeypatch):
    monkeypatch.setenv("SHOP_TEST_TOKEN", "tok-3141592653")
    data = read_config(None, ["tracking.tracking_uri=https://ci:${SHOP_TEST_TOKEN}@mlflow.example/x",
                              "lakehouse.root=/data/${SHOP_TEST_TOKEN}-free"])
    assert data["tracking"]["tracking_uri"] == "https://ci:tok-3141592653@mlflow.example/x"
    assert secrets.mask("root is /data/tok-3141592653-free") == "root is /data/***-free"


def test_an_unset_variable_names_the_key(monkeypatch):
    monkeypatch.delenv("SHOP_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"tracking\.tracking_uri: environment variable SHOP_TEST_UNSET is not set"):
        read_config(None, ["tracking.tracking_uri=${SHOP_TEST_UNSET}"])


def test_redaction_of_keys_uris_and_remembered_values():
    secrets.remember("plain-remembered-value")
    params = secrets.redact_params({
        "spark.conf": "{'fs.azure.account.key': 'x'}",
        "db.password": "hunter2",
        "empty.password": "None",
        "tracking.tracking_uri": "postgresql://user:pa55word@db:5432/mlflow",
        "note": "has plain-remembered-value inside",
        "als.rank": "10",
    })
    assert params["db.password"] == "***" and params["empty.password"] == "None"
    assert params["tracking.tracking_uri"] == "postgresql://user:***@db:5432/mlflow"
    assert params["note"] == "has *** inside" and params["als.rank"] == "10"


@pytest.mark.e2e
def test_a_secret_given_in_config_reaches_neither_mlflow_nor_the_log(tmp_path, mlflow_store, monkeypatch, capsys):
    monkeypatch.setenv("SHOP_TEST_S3_SECRET", "s3cr3t-AbCdEf-0123")
    spark_conf = ('spark.conf={"fs.s3a.secret.key": "${SHOP_TEST_S3_SECRET}", '
                  '"spark.hadoop.example.endpoint": "https://svc:hunter2pass@store.example/bucket"}')
    assert main("generate_data", cli_args(tmp_path, mlflow_store, *TINY_SHOP, spark_conf)) == 0
    mlflow.set_tracking_uri(mlflow_store["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=[f"test-{tmp_path.name}"], output_format="list")
    assert len(runs) == 1
    params = runs[0].data.params
    shown = " ".join([*params.values(), capsys.readouterr().out,
                      *[log.read_text() for log in (tmp_path / "logs").glob("*.log")]])
    assert "***" in params["spark.conf"] and "svc:***@store.example" in params["spark.conf"]
    assert "s3cr3t-AbCdEf-0123" not in shown and "hunter2pass" not in shown
