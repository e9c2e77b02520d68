"""Pseudonymised customer ids: Spark's HMAC equals Python's; a missing or short key is a config error.
That no raw id reaches any table or MLflow while every job runs is checked on the whole pipeline in
tests/test_pipeline_e2e.py."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pyspark.sql import functions as F

from shopai_spark.config import ConfigError
from shopai_spark.pseudonyms import hmac_sha256

from .conftest import LOCAL_CONF


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
