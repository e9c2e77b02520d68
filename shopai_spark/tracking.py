"""MLflow tracking shared by every job.

:func:`tracked_run` opens a run in the configured experiment and yields a :class:`JobRun` that logs
the flattened config as params, the Delta version of every input table, counts and metrics, small
tables (CSV) and figures (PNG). It works with the default local backend (SQLite + ``./mlruns``) and
with any remote tracking URI (``databricks``, ``http://…``). With ``tracking.enabled: false`` the
run is a no-op that still hands out a run id, so jobs keep one code path.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopai_spark.config import AppConfig, TrackingConfig, flatten
from shopai_spark.tables import Lakehouse, TableRef

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
BATCH = 100


class JobRun:
    """Handle on the current MLflow run of a job."""

    def __init__(self, run_id: str, active: bool):
        self.run_id = run_id
        self.active = active

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active:
            return
        import mlflow

        items = [(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), BATCH):
            mlflow.log_params(dict(items[start:start + BATCH]))

    def log_metrics(self, metrics: Mapping[str, float | int | None], step: int | None = None) -> None:
        """Log numeric metrics; None values (metric undefined on this data) are skipped."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        log.info("metrics: %s", {k: round(v, 6) for k, v in clean.items()})
        if self.active and clean:
            import mlflow

            mlflow.log_metrics(clean, step=step)

    def log_input_versions(self, lakehouse: Lakehouse, refs: list[TableRef]) -> dict[str, int | None]:
        """Record the Delta version of each input table as ``input_version.<layer>.<name>`` (param and tag)."""
        versions = {f"input_version.{ref}": lakehouse.version(ref) for ref in refs}
        if self.active:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in versions.items()})
        self.log_params(versions)
        return versions

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.active:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_table(self, table: pd.DataFrame, name: str) -> None:
        """Log a small pandas DataFrame as ``<name>.csv`` (top rules, profiles, metric tables)."""
        if not self.active:
            return
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.csv"
            table.to_csv(path, index=False)
            mlflow.log_artifact(str(path))

    def log_figure(self, figure: Any, name: str) -> None:
        """Log a matplotlib figure as ``<name>.png``."""
        if self.active:
            import mlflow

            mlflow.log_figure(figure, f"{name}.png")

    def log_text(self, text: str, name: str) -> None:
        if self.active:
            import mlflow

            mlflow.log_text(text, name)


def configure_mlflow(config: TrackingConfig) -> None:
    """Point MLflow at the configured tracking (and registry) store."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    if config.registry_uri:
        mlflow.set_registry_uri(config.registry_uri)


def ensure_experiment(config: TrackingConfig) -> str:
    """Experiment id for ``config.experiment``, created with ``artifact_location`` if missing."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(config.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = config.artifact_location
    if location and "://" not in location:
        location = Path(location).resolve().as_uri()
    return mlflow.create_experiment(config.experiment, artifact_location=location)


@contextmanager
def tracked_run(app_config: AppConfig, job_name: str, nested: bool = False,
                run_name: str | None = None) -> Iterator[JobRun]:
    """Open an MLflow run for ``job_name``, log the config as params, yield a :class:`JobRun`.

    The run ends FAILED when the body raises (the exception propagates), FINISHED otherwise.
    """
    config = app_config.tracking
    if not config.enabled:
        yield JobRun(run_id=f"untracked-{uuid.uuid4().hex[:12]}", active=False)
        return
    import mlflow

    configure_mlflow(config)
    experiment_id = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or job_name, nested=nested) as run:
        job_run = JobRun(run_id=run.info.run_id, active=True)
        job_run.set_tags({"job": job_name})
        if not nested:
            job_run.log_params(flatten(app_config))
        log.info("MLflow run %s (experiment %s, %s)", run.info.run_id, config.experiment, config.tracking_uri)
        yield job_run
