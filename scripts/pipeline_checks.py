"""What the pipeline must have produced, shared by the cluster, Connect and Spark 4.0 smoke runs.

Each run points conf/*.yaml at a work folder with :func:`overrides` (a small shop, small searches:
these runs check that every job works where users run it, not model quality), runs the jobs, and
checks each with :func:`check_outputs`: the job's tables are Delta tables with rows, and its latest
MLflow run FINISHED. Tables are read back in a separate local Spark process (:func:`table_state`),
never through the session under test.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# job → tables it must have written (layer/name)
JOBS: dict[str, list[str]] = {
    "generate_data": ["bronze/truth_customer_segments", "bronze/truth_bundles"],
    "ingest": ["silver/events", "silver/orders", "silver/order_items", "silver/products"],
    "als": ["gold/user_recommendations", "gold/similar_items", "gold/als_user_index", "gold/als_item_index",
            "gold/als_item_factors"],
    "fpgrowth": ["gold/frequent_itemsets", "gold/association_rules", "gold/frequently_bought_together"],
    "segments": ["gold/customer_segments", "gold/segment_profiles", "gold/segment_migrations"],
    "demand_features": ["gold/sku_demand_features", "gold/inventory_signals"],
}
# jobs whose MLflow run must hold a Spark model (artifact folder "model" with the spark flavor)
MODEL_JOBS = ("als", "segments")


def overrides(workdir: Path) -> list[str]:
    """``--set`` arguments that move every output into ``workdir`` and keep the shop small."""
    sets = [
        f"lakehouse.root={workdir / 'lakehouse'}",
        f"generate.raw_dir={workdir / 'raw'}",
        f"ingest.events.path={workdir / 'raw' / 'events'}",
        f"ingest.orders.path={workdir / 'raw' / 'orders'}",
        f"ingest.products.path={workdir / 'raw' / 'products'}",
        f"tracking.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        f"tracking.artifact_location={workdir / 'mlruns'}",
        f"spark.checkpoint_dir={workdir / 'checkpoints'}",
        "spark.shuffle_partitions=4",
        "generate.users=400", "generate.skus=80", "generate.days=120",
        "segments.k_max=4", "segments.n_init=1", "demand.gbt_max_iter=5", "als.max_iter=5",
        # the per-SKU models that run on a cluster like the others (ARIMA: unit tests and make demo)
        "demand.models=[zero, moving_average, seasonal_naive, ets, croston_sba, gbt]",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def check_outputs(job: str, workdir: Path) -> None:
    """The job's tables exist as Delta tables and its latest MLflow run finished (with a loadable
    model layout for MODEL_JOBS)."""
    import mlflow

    for table in JOBS[job]:
        if not (workdir / "lakehouse" / table / "_delta_log").is_dir():
            raise AssertionError(f"{job}: table {table} was not written")
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.job = '{job}'")
    if runs.empty or runs.iloc[0]["status"] != "FINISHED":
        raise AssertionError(f"{job}: no FINISHED MLflow run found")
    if job in MODEL_JOBS:
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0]["run_id"], "model")}
        if not {"model/MLmodel", "model/sparkml"} <= artifacts:
            raise AssertionError(f"{job}: run {runs.iloc[0]['run_id']} has no Spark model (artifacts: {artifacts})")


def checking_session():
    """A local session of this process (started on first use), never the session under test."""
    from shopai_spark.config import SparkConfig
    from shopai_spark.session import get_spark

    return get_spark(SparkConfig(master="local[1]", ui_enabled=False, checkpoint_dir=None, app_name="check"))


def table_rows(workdir: Path, tables: list[str]) -> dict[str, list[str]]:
    """{table: its rows as sorted JSON strings} of ``lakehouse/<table>`` without the columns that name
    the run (run_id, generated_at), read by :func:`checking_session`."""
    from pyspark.sql import functions as F

    spark = checking_session()
    rows = {}
    for table in tables:
        frame = spark.read.format("delta").load(str(workdir / "lakehouse" / table))
        kept = [c for c in frame.columns if c not in ("run_id", "generated_at")]
        rows[table] = sorted(r[0] for r in frame.select(F.to_json(F.struct(*kept))).collect())
    return rows


def table_state(workdir: Path, tables: list[str]) -> dict[str, tuple[int, int]]:
    """{table: (latest Delta version, rows)} of ``lakehouse/<table>``, read by :func:`checking_session`."""
    spark = checking_session()
    state = {}
    for table in tables:
        path = str(workdir / "lakehouse" / table)
        version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]
        state[table] = (int(version), spark.read.format("delta").load(path).count())
    return state
