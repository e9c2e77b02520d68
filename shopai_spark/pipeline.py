"""The whole pipeline in one process: generate → ingest → the four jobs, with one config.

``jobs/pipeline.py --steps ingest,als`` runs a subset (in pipeline order). Each step is its own MLflow
run; a progress line per step gives step k of n, rows written and seconds. The closing summary says
where the lakehouse and the MLflow store are and how to open the MLflow UI.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

from shopai_spark.app import JOBS, AppConfig, run_entry_point, run_job
from shopai_spark.config import ConfigError
from shopai_spark.runtime import JobSummary, job_parser
from shopai_spark.session import get_spark


def run_pipeline(config: AppConfig, steps: Sequence[str] | None = None,
                 spark: SparkSession | None = None) -> list[JobSummary]:
    """Run ``steps`` (default: all, in pipeline order) on ``spark`` (default: from config); print a
    progress line per step; return the summaries."""
    chosen = chosen_steps(steps)
    spark = spark or get_spark(config.spark)
    summaries = []
    for number, name in enumerate(chosen, start=1):
        started = time.perf_counter()
        summary = run_job(name, config, spark, finish_line=False)
        rows = sum(summary.tables.values())
        print(f"[{number}/{len(chosen)}] {name}: {rows:,} rows written in {time.perf_counter() - started:.1f} s",
              flush=True)
        print(summary.render(), flush=True)
        summaries.append(summary)
    return summaries


def chosen_steps(steps: Sequence[str] | None) -> list[str]:
    """``steps`` in pipeline order (None: all); ConfigError naming an unknown one."""
    unknown = sorted(set(steps or ()) - set(JOBS))
    if unknown:
        raise ConfigError(f"unknown pipeline step(s) {unknown}; steps are {list(JOBS)}")
    return [s for s in JOBS if steps is None or s in steps]


def summaries_frame(spark: SparkSession, summaries: Sequence[JobSummary]) -> DataFrame:
    """One row per table written: job, table, rows (for ``display`` in a notebook)."""
    rows = [(s.job, table, count) for s in summaries for table, count in s.tables.items()]
    return spark.createDataFrame(rows, "job string, table string, rows long")


def closing_summary(config: AppConfig) -> str:
    """Where things are and how to look at them."""
    where = config.lakehouse.root or f"catalog {config.lakehouse.catalog}"
    lines = ["", "Done.", f"  lakehouse:      {where}  (Delta tables <layer>/<table>)",
             f"  MLflow store:   {config.tracking.tracking_uri}  (artifacts: {config.tracking.artifact_location})"]
    if config.tracking.tracking_uri.startswith("sqlite"):
        lines.append(f"  open the UI:    .venv/bin/mlflow ui --backend-store-uri {config.tracking.tracking_uri}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser("jobs/pipeline.py", __doc__.splitlines()[0])
    parser.add_argument("--steps", help=f"comma-separated subset of {','.join(JOBS)}")
    args = parser.parse_args(argv)
    try:
        steps = chosen_steps(args.steps.split(",") if args.steps else None)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2

    def pipeline(config: AppConfig, spark: SparkSession) -> None:
        run_pipeline(config, steps, spark)
        print(closing_summary(config), flush=True)

    return run_entry_point("pipeline", args, pipeline)
