"""The application: every domain's config section composed into one typed config, and the jobs.

The one module that knows every domain. Below it the platform (config loading, session, tables,
tracking, runtime) knows none, and no domain imports another (``tests/test_import_layers.py``).
``jobs/<name>.py`` is one call to :func:`main`; the pipeline, the notebooks and the tests run jobs
through :func:`run_job`. :data:`JOBS` are the pipeline's steps; :data:`ON_DEMAND` jobs (the
recommender comparison of :mod:`shopai_spark.harness`) run only when called.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from shopai_spark import harness as harness_job
from shopai_spark import runtime
from shopai_spark.basket import job as basket_job
from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.config import (
    ConfigError,
    PlatformConfig,
    build,
    read_config,
    setting,
)
from shopai_spark.console import quiet_console, verbose_console
from shopai_spark.demand import job as demand_job
from shopai_spark.demand.config import DemandConfig
from shopai_spark.errors import JobError, RunKilled
from shopai_spark.generate import job as generate_job
from shopai_spark.generate.config import GenerateConfig
from shopai_spark.ingest import job as ingest_job
from shopai_spark.ingest.config import IngestConfig
from shopai_spark.recommend import job as recommend_job
from shopai_spark.recommend.config import AlsConfig
from shopai_spark.runtime import Job, JobSummary
from shopai_spark.segment import job as segment_job
from shopai_spark.segment.config import SegmentsConfig
from shopai_spark.session import session_for

log = logging.getLogger("shopai_spark")


@dataclass(frozen=True)
class AppConfig(PlatformConfig):
    """The whole configuration: the platform sections (spark, lakehouse, tracking, inherited from
    :class:`PlatformConfig`) and one section per job."""

    generate: GenerateConfig = setting(
        factory=GenerateConfig, doc="section of the synthetic shop generator (``jobs/generate_data.py``)")
    ingest: IngestConfig = setting(
        factory=IngestConfig, doc="section of the ingest job (``jobs/ingest.py``): the raw sources and the "
                                  "validation knobs")
    als: AlsConfig = setting(factory=AlsConfig, doc="section of the recommendations job (``jobs/als.py``)")
    fpgrowth: FpGrowthConfig = setting(
        factory=FpGrowthConfig, doc="section of the association-rules job (``jobs/fpgrowth.py``)")
    segments: SegmentsConfig = setting(
        factory=SegmentsConfig, doc="section of the customer-segments job (``jobs/segments.py``)")
    demand: DemandConfig = setting(
        factory=DemandConfig, doc="section of the per-SKU demand features job (``jobs/demand_features.py``)")
    evaluate: harness_job.EvaluateConfig = setting(
        factory=harness_job.EvaluateConfig,
        doc="section of the recommender comparison (``jobs/evaluate_recommenders.py``), which also reads als and "
            "fpgrowth")

    @property
    def platform(self) -> PlatformConfig:
        return PlatformConfig(spark=self.spark, lakehouse=self.lakehouse, tracking=self.tracking)

    @property
    def harness(self) -> harness_job.HarnessSettings:
        """What the recommender comparison reads: the ``evaluate``, ``als`` and ``fpgrowth`` sections."""
        return harness_job.HarnessSettings(evaluate=self.evaluate, als=self.als, fpgrowth=self.fpgrowth)


# every job, in pipeline order: name, run, config section, the tables it owns, the shared ones it adds to
JOBS: dict[str, Job] = {job.name: job for job in (
    Job("generate_data", generate_job.run, "generate", generate_job.OUTPUTS),
    Job("ingest", ingest_job.run, "ingest", ingest_job.OUTPUTS, ingest_job.APPENDS),
    Job("als", recommend_job.run, "als", recommend_job.OUTPUTS, recommend_job.APPENDS),
    Job("fpgrowth", basket_job.run, "fpgrowth", basket_job.OUTPUTS),
    Job("segments", segment_job.run, "segments", segment_job.OUTPUTS, segment_job.APPENDS),
    Job("demand_features", demand_job.run, "demand", demand_job.OUTPUTS),
)}
# jobs run on demand, not pipeline steps: the recommender comparison writes no table
ON_DEMAND: dict[str, Job] = {job.name: job for job in (
    Job("evaluate_recommenders", harness_job.run, "harness"),
)}


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> AppConfig:
    """Read a YAML file (None → built-in defaults), apply ``key=value`` overrides and validate the
    whole tree; raises ConfigError naming the bad key."""
    return build(AppConfig, read_config(path, tuple(overrides)))


def run_job(name: str, config: AppConfig, spark: SparkSession | None = None,
            finish_line: bool = True) -> JobSummary:
    """Run job ``name`` with its own section of ``config`` and the platform settings
    (``finish_line``: see :func:`shopai_spark.runtime.run_job`)."""
    job = {**JOBS, **ON_DEMAND}[name]
    return runtime.run_job(job, getattr(config, job.section), config.platform, spark, finish_line)


@contextmanager
def job_console(name: str, args: argparse.Namespace) -> Iterator[None]:
    """The console of an entry point: quiet (step lines and summaries; Spark, Ivy and MLflow output
    in ``<args.log_dir>/<name>-<time>.log``, whose path is printed at the end) unless ``args.verbose``."""
    if args.verbose:
        verbose_console()
        yield
        return
    with quiet_console(name, args.log_dir) as path:
        try:
            yield
        finally:
            print(f"log: {path}", flush=True)


def run_entry_point(name: str, args: argparse.Namespace, body: Callable[[AppConfig, SparkSession], None]) -> int:
    """Load the config from ``args.conf`` / ``args.overrides`` and run ``body`` on the session under
    :func:`job_console`. Returns the process exit code: 0; 2 for a bad config (the key named, before
    Spark starts); an expected failure's :attr:`~shopai_spark.errors.JobError.exit_code` with its
    one-line message (the traceback is in the log)."""
    try:
        config = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    failure = None
    with job_console(name, args):
        try:
            with session_for(config.spark) as spark:
                body(config, spark)
        except (JobError, RunKilled) as exc:
            log.debug("%s failed", name, exc_info=True)
            failure = exc
    if isinstance(failure, RunKilled):
        print(f"{name} killed ({failure}): its outputs are back at their versions before the run", file=sys.stderr)
        return failure.exit_code
    if failure is not None:
        print(f"{name} failed: {failure}", file=sys.stderr)
        return failure.exit_code
    return 0


def main(name: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs/<name>.py`` (see :func:`run_entry_point` for the exit codes)."""
    args = runtime.job_parser(f"jobs/{name}.py", f"shopai_spark {name} job").parse_args(argv)
    return run_entry_point(name, args, lambda config, spark: print(run_job(name, config, spark).render(), flush=True))
