"""The little a Databricks notebook needs: config from widgets, and running a job on the notebook's session.

Notebooks (``notebooks/*.py``, Databricks source format) declare two widgets — ``conf`` (a YAML path)
and ``overrides`` (``key=value`` pairs separated by ``;``) — plus one text widget per main parameter
of their job, named by its config key (``als.rank``); then they call :func:`run_notebook_job`.
A parameter widget left empty keeps the value from the config file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from shopai_spark.app import AppConfig, load_config, run_job
from shopai_spark.console import verbose_console
from shopai_spark.runtime import JobSummary

DEFAULT_CONF = "../conf/databricks.yaml"


def declare_widgets(dbutils: Any, parameters: Sequence[str] = (), conf: str = DEFAULT_CONF,
                    overrides: str = "") -> None:
    """Create the ``conf`` and ``overrides`` text widgets and an empty text widget per config key in
    ``parameters`` (e.g. ``["als.rank", "als.top_n"]``)."""
    dbutils.widgets.text("conf", conf, "Config file")
    dbutils.widgets.text("overrides", overrides, "Overrides (key=value; key=value)")
    for key in parameters:
        dbutils.widgets.text(key, "", f"{key} (empty = from the config file)")


def config_from_widgets(dbutils: Any, parameters: Sequence[str] = ()) -> AppConfig:
    """Typed config from the ``conf`` widget, then the ``overrides`` widget, then every non-empty
    parameter widget in ``parameters`` (which wins)."""
    overrides = [item.strip() for item in dbutils.widgets.get("overrides").split(";") if item.strip()]
    overrides += [f"{key}={dbutils.widgets.get(key).strip()}" for key in parameters
                  if dbutils.widgets.get(key).strip()]
    return load_config(dbutils.widgets.get("conf"), overrides)


def run_notebook_job(job: str, config: AppConfig, spark: SparkSession) -> JobSummary:
    """Run job ``job`` (``als``, ``segments``, ...) on the notebook's session (its own MLflow run)
    and return its summary."""
    verbose_console()
    return run_job(job, config, spark)
