"""MLflow tracking shared by every job.

:func:`tracked_run` opens a run in the configured experiment and yields a :class:`JobRun` that logs
the flattened config as params, the Delta version of every input table, counts and metrics, small
tables (CSV) and figures (PNG). It works with the default local backend (SQLite + ``./mlruns``) and
with any remote tracking URI (``databricks``, ``http://…``). With ``tracking.enabled: false`` the
run is a no-op that still hands out a run id, so jobs keep one code path.

Spark ML models are logged in MLflow's ``spark`` flavor by :meth:`JobRun.log_spark_model` and read
back by :func:`load_spark_model`. On a classic session that is ``mlflow.spark``. On Spark Connect
outside Databricks ``mlflow.spark`` cannot move the model (it copies through the JVM's Hadoop
client), so the Connect server writes the model straight into the run's artifact store and the
``MLmodel`` file beside it is written here: the same layout, loadable by ``mlflow.spark.load_model``
from any classic session. That needs an artifact store the server can reach (the same machine, or
an object store); Databricks serverless uses ``mlflow.spark`` with a Unity Catalog volume
(``MLFLOW_DFS_TMP``), as MLflow documents.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopai_spark.config import TrackingConfig
from shopai_spark.errors import RunKilled
from shopai_spark.secrets import mask
from shopai_spark.session import is_connect
from shopai_spark.tables import TableRef

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.ml import Model, PipelineModel
    from pyspark.sql import SparkSession

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

    def log_input_versions(self, versions: Mapping[TableRef, int | None]) -> None:
        """Record the Delta version read of each input table as ``input_version.<layer>.<name>`` (param and tag)."""
        named = {f"input_version.{ref}": version for ref, version in versions.items()}
        if self.active:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in named.items()})
        self.log_params(named)

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

    @contextmanager
    def child_run(self, job_name: str, run_name: str) -> Iterator[JobRun]:
        """A nested MLflow run ``run_name`` (tag ``job``: ``job_name``) under this one, e.g. one
        tuning trial; untracked when this run is."""
        if not self.active:
            yield JobRun(run_id=f"untracked-{uuid.uuid4().hex[:12]}", active=False)
            return
        import mlflow

        experiment_id = mlflow.get_run(self.run_id).info.experiment_id
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=True) as run:
            child = JobRun(run_id=run.info.run_id, active=True)
            child.set_tags({"job": job_name})
            yield child

    def log_spark_model(self, spark: SparkSession, model: Model, name: str = "model", signature: Any = None,
                        input_example: pd.DataFrame | None = None,
                        registered_model_name: str | None = None) -> tuple[str | None, str | None]:
        """Log a fitted Spark ML model (wrapped in a PipelineModel) under ``name`` and register it as
        ``registered_model_name`` when given. Returns (model URI, registered version); (None, None)
        for an untracked run."""
        if not self.active:
            return None, None
        import mlflow
        import mlflow.spark
        import pyspark

        requirements = [f"pyspark=={pyspark.__version__}"]
        if not is_connect(spark) or _in_databricks():
            info = mlflow.spark.log_model(model, name, signature=signature, input_example=input_example,
                                          registered_model_name=registered_model_name,
                                          pip_requirements=requirements)
            version = getattr(info, "registered_model_version", None)
            return info.model_uri, None if version is None else str(version)
        uri = self._log_spark_model_from_server(model, name, signature, input_example, requirements)
        if registered_model_name is None:
            return uri, None
        return uri, str(mlflow.register_model(uri, registered_model_name).version)

    def _log_spark_model_from_server(self, model: Model, name: str, signature: Any,
                                     input_example: pd.DataFrame | None, requirements: list[str]) -> str:
        import mlflow
        import pyspark
        from mlflow.models import Model as MlflowModel
        from mlflow.models.utils import _save_example
        from mlflow.pyfunc import add_to_model
        from pyspark.ml import PipelineModel

        pipeline = model if isinstance(model, PipelineModel) else PipelineModel([model])
        pipeline.write().overwrite().save(f"{mlflow.get_artifact_uri(name)}/sparkml")   # written by the server
        described = MlflowModel(artifact_path=name, run_id=self.run_id, signature=signature)
        described.add_flavor("spark", pyspark_version=pyspark.__version__, model_data="sparkml",
                             model_class=type(pipeline).__module__ + "." + type(pipeline).__name__)
        add_to_model(described, loader_module="mlflow.spark", data="sparkml", env={"virtualenv": "python_env.yaml"})
        with tempfile.TemporaryDirectory() as tmp:
            if input_example is not None:
                _save_example(described, input_example, tmp)
            described.save(f"{tmp}/MLmodel")
            Path(tmp, "requirements.txt").write_text("\n".join(requirements) + "\n")
            mlflow.log_artifacts(tmp, name)
        return f"runs:/{self.run_id}/{name}"


def load_spark_model(spark: SparkSession, model_uri: str) -> PipelineModel:
    """The Spark ML PipelineModel logged at ``model_uri`` (``runs:/…``, ``models:/…``), read on the
    session's cluster (on Spark Connect straight from the artifact store, see the module docstring)."""
    import mlflow.spark

    if not is_connect(spark) or _in_databricks():
        return mlflow.spark.load_model(model_uri)
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from pyspark.ml import PipelineModel

    repository = ModelsArtifactRepository if model_uri.startswith("models:/") else RunsArtifactRepository
    location = repository.get_underlying_uri(model_uri) if model_uri.split(":")[0] in ("models", "runs") \
        else model_uri
    return PipelineModel.load(f"{location.rstrip('/')}/sparkml")


def _in_databricks() -> bool:
    from mlflow.utils import databricks_utils

    return databricks_utils.is_in_databricks_runtime()


def configure_mlflow(config: TrackingConfig) -> None:
    """Point MLflow at the configured tracking (and registry) store."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    if config.registry_uri:
        mlflow.set_registry_uri(config.registry_uri)


def ensure_experiment(config: TrackingConfig) -> str:
    """Experiment id for ``config.experiment``, created with ``artifact_location`` if missing.

    Safe when several jobs start at once against one store: on a local SQLite store the first
    contact (MLflow creates a new store's tables then) and the create run under
    :func:`sqlite_store_lock`; on any store, a create that another process won in between
    (``RESOURCE_ALREADY_EXISTS``) reads the winner's experiment.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    location = config.artifact_location
    if location and "://" not in location:
        location = Path(location).resolve().as_uri()
    with sqlite_store_lock(config.tracking_uri):
        experiment = mlflow.get_experiment_by_name(config.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return mlflow.create_experiment(config.experiment, artifact_location=location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            log.info("Experiment %s was created by another process at the same time", config.experiment)
            return mlflow.get_experiment_by_name(config.experiment).experiment_id


@contextmanager
def sqlite_store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` beside a local SQLite tracking store (``sqlite:///…``);
    a no-op for other stores, and where the database's folder does not exist or the OS has no ``fcntl``."""
    database = Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None
    try:
        import fcntl
    except ImportError:   # Windows: no advisory locks; concurrent first runs there are not serialised
        fcntl = None
    if database is None or fcntl is None or not database.parent.is_dir():
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def tracked_run(config: TrackingConfig, job_name: str, params: Mapping[str, Any] | None = None) -> Iterator[JobRun]:
    """Open an MLflow run for ``job_name`` (tag ``job``), log ``params``, yield a :class:`JobRun`.

    The run ends FAILED when the body raises (the exception propagates), KILLED on
    :class:`~shopai_spark.errors.RunKilled` (SIGTERM), FINISHED otherwise.
    """
    if not config.enabled:
        yield JobRun(run_id=f"untracked-{uuid.uuid4().hex[:12]}", active=False)
        return
    import mlflow

    configure_mlflow(config)
    experiment_id = ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=job_name) as run:
        job_run = JobRun(run_id=run.info.run_id, active=True)
        job_run.set_tags({"job": job_name})
        job_run.log_params(params or {})
        log.info("MLflow run %s (experiment %s, %s)", run.info.run_id, config.experiment, mask(config.tracking_uri))
        try:
            yield job_run
        except RunKilled:
            mlflow.end_run("KILLED")
            raise


def end_abandoned_run(config: TrackingConfig, run_id: str) -> None:
    """Mark the MLflow run ``run_id`` of a killed job KILLED when it is still RUNNING (untracked runs: nothing)."""
    if not config.enabled or run_id.startswith("untracked-"):
        return
    from mlflow import MlflowClient

    configure_mlflow(config)
    client = MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "KILLED")
        log.warning("MLflow run %s of a killed job marked KILLED", run_id)
