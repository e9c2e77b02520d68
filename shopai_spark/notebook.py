"""The little a Databricks notebook needs: config from widgets, and running a job on the notebook's session.

Notebooks (``notebooks/*.py``, Databricks source format) declare two widgets — ``conf`` (a YAML path)
and ``overrides`` (``key=value`` pairs separated by ``;``) — then call :func:`run_notebook_job`.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from shopai_spark.config import AppConfig, load_config
from shopai_spark.runtime import JobFunction, JobSummary, configure_logging, run_job

DEFAULT_CONF = "../conf/databricks.yaml"


def declare_widgets(dbutils: Any, conf: str = DEFAULT_CONF, overrides: str = "") -> None:
    """Create the ``conf`` and ``overrides`` text widgets."""
    dbutils.widgets.text("conf", conf, "Config file")
    dbutils.widgets.text("overrides", overrides, "Overrides (key=value; key=value)")


def config_from_widgets(dbutils: Any) -> AppConfig:
    """Typed config from the ``conf`` and ``overrides`` widgets."""
    overrides = [item.strip() for item in dbutils.widgets.get("overrides").split(";") if item.strip()]
    return load_config(dbutils.widgets.get("conf"), overrides)


def run_notebook_job(job: str, fn: JobFunction, config: AppConfig, spark: SparkSession) -> JobSummary:
    """Run a job on the notebook's session (its own MLflow run) and return its summary."""
    configure_logging()
    return run_job(job, fn, config, spark)
