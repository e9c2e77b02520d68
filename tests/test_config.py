"""Typed config: defaults, overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from shopai_spark.app import AppConfig, load_config, main
from shopai_spark.config import ConfigError, flatten

from .conftest import LOCAL_CONF, ROOT


def test_shipped_configs_load():
    local = load_config(LOCAL_CONF)
    assert local.spark.master == "local[2]"
    assert local.lakehouse.root == "lakehouse"
    assert local.tracking.tracking_uri == "sqlite:///mlflow.db"
    assert local.ingest.orders.columns["order_id"] == "InvoiceNo"
    cluster = load_config(ROOT / "conf" / "cluster.yaml")
    assert cluster.spark.master is None and cluster.lakehouse.root.startswith("s3a://")
    databricks = load_config(ROOT / "conf" / "databricks.yaml")
    assert databricks.lakehouse.catalog == "main" and databricks.lakehouse.root is None
    assert databricks.tracking.tracking_uri == "databricks"


def test_overrides_are_typed():
    config = load_config(LOCAL_CONF, ["spark.shuffle_partitions=3", "spark.master=null", "generate.dirt_share=0.05",
                                      "demand.lags=[1, 2]", "spark.conf={spark.foo: bar}"])
    assert config.spark.shuffle_partitions == 3
    assert config.spark.master is None
    assert config.generate.dirt_share == 0.05
    assert config.demand.lags == [1, 2]
    assert config.spark.conf == {"spark.foo": "bar"}


@pytest.mark.parametrize(("override", "message"), [
    ("spark.shufle_partitions=3", "unknown config key 'spark.shufle_partitions'"),
    ("nosuchsection.x=1", "unknown config key 'nosuchsection'"),
    ("spark.shuffle_partitions=many", "spark.shuffle_partitions: expected an integer, got 'many'"),
    ("spark.ui_enabled=3", "spark.ui_enabled: expected true/false"),
    ("ingest.orders.format=xml", "ingest.orders.format: 'xml' is not one of 'csv', 'json', 'xlsx', 'parquet'"),
    ("ingest.orders.quote=ab", "ingest.orders: quote must be one character"),
    ("ingest.min_ts=not-a-date", "ingest: min_ts must be a date"),
    ("ingest.orders.encoding=klingon", "is not a known character encoding"),
    ("tracking.experiment=null", "tracking.experiment: must not be null"),
    ("generate.dirt_share=0.9", "generate.dirt_share must be in"),
    ("als.reg_param=.nan", "als.reg_param: expected a finite number"),
    ("generate.promo_lift=.inf", "generate.promo_lift: expected a finite number"),
    ("spark.shuffle_partitions=0", "spark: shuffle_partitions must be >= 1"),
    ("demand.lags=[1, x]", r"demand.lags\[1\]: expected an integer"),
    ("spark", "must look like key=value"),
])
def test_bad_values_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(LOCAL_CONF, [override])


def test_missing_required_value_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  events:\n    format: json\n")
    with pytest.raises(ConfigError, match="missing required config key 'ingest.events.path'"):
        load_config(path)


def test_flatten_gives_every_leaf():
    params = flatten(AppConfig())
    assert params["spark.master"] == "local[2]"
    assert params["ingest.orders.path"] == "data/raw/orders"
    assert all(isinstance(v, str) for v in params.values())


def test_job_entry_point_exits_2_with_the_key(capsys):
    assert main("ingest", ["--conf", str(LOCAL_CONF), "--set", "als.rnak=3"]) == 2
    assert "unknown config key 'als.rnak'" in capsys.readouterr().err


def test_readme_configuration_reference_is_generated_from_the_classes():
    from shopai_spark.config_reference import README, updated_readme

    text = README.read_text()
    assert updated_readme(text) == text, "run: .venv/bin/python -m shopai_spark.config_reference"
    assert "| `spark.master` |" in text and "| `ingest.cancellation_prefix` |" in text


def _config_classes(cls: type) -> list[type]:
    """``cls`` and every config dataclass reachable from its fields (nested and optional sections)."""
    found = [cls]
    for tp in typing.get_type_hints(cls).values():
        for candidate in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(candidate) and candidate not in found:
                found += [c for c in _config_classes(candidate) if c not in found]
    return found


def test_every_config_field_has_a_doc():
    classes = _config_classes(AppConfig)
    assert {"SparkConfig", "SourceConfig", "IngestConfig", "AlsConfig", "DemandConfig"} <= {c.__name__ for c in classes}
    undocumented = [f"{cls.__name__}.{f.name}" for cls in classes for f in dataclasses.fields(cls)
                    if not str(f.metadata.get("doc", "")).strip()]
    assert undocumented == [], f"declare {undocumented} with shopai_spark.config.setting(..., doc=...)"


def test_configuration_reference_rejects_a_field_without_a_doc():
    from shopai_spark.config_reference import rows

    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        size: int = 1

    with pytest.raises(ValueError, match=r"Undocumented\.size has no doc"):
        rows(Undocumented)
