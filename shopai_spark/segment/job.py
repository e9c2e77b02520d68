"""Customer segments job: features → (choose k →) scaler + K-Means → stable ids and names → gold.

``segments.mode = fit`` (default): choose k (or take ``segments.k``), fit the pipeline on customers
with orders, match segment ids to the previous run, log the fitted pipeline (with the id/name
mapping as its last stage) to MLflow. ``segments.mode = score``: load a logged pipeline and assign
customers without refitting. Both modes write gold.customer_segments, gold.segment_profiles and
gold.segment_migrations; all three are computed before any is written, and if a write fails the
tables already written in this run are restored to their previous version.

silver.orders, order_items and returns are required. Without silver.events (a shop with an order
export only) or without product categories the job runs on what there is: the features those inputs
give are null (see :mod:`~shopai_spark.segment.features`), noted in the log and the summary, and a
model that would need them is refused. Guest checkouts are left out of the customers and counted
(metrics ``guest_orders_skipped``, ``guest_returns_skipped``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.errors import InputError
from shopai_spark.quality import QUARANTINE, quarantine_rejected
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS
from shopai_spark.segment import features as feats
from shopai_spark.segment.config import ALL_FEATURES, EVENT_FEATURES
from shopai_spark.segment.fitting import assign, fit_with_ids, prospects, select_k
from shopai_spark.segment.profiles import profile
from shopai_spark.segment.scaling import model_features
from shopai_spark.tables import EmptyOutputError, TableRef, TableWrite, with_run_metadata
from shopai_spark.tracking import load_spark_model

log = logging.getLogger(__name__)

CUSTOMER_SEGMENTS = TableRef("gold", "customer_segments")
SEGMENT_PROFILES = TableRef("gold", "segment_profiles")
SEGMENT_MIGRATIONS = TableRef("gold", "segment_migrations")
OUTPUTS = (CUSTOMER_SEGMENTS, SEGMENT_PROFILES, SEGMENT_MIGRATIONS)
APPENDS = (QUARANTINE,)
MODEL_TAG = "segments_model_uri"


# ---------------------------------------------------------------------------------------------
# job steps


def read_inputs(ctx: JobContext, used: list[TableRef]) -> tuple[feats.Inputs, list[str]]:
    """The silver frames, and one note per input the shop does not have: ``events`` is None without
    silver.events, ``products`` None without silver.products or when no product has a category
    (products derived from order lines). Orders, order_items and returns are required
    (MissingTableError)."""
    notes = []
    events = ctx.read(EVENTS.ref) if EVENTS.ref in used else None
    if events is None:
        notes.append(f"no {EVENTS.ref}: behaviour features left empty ({', '.join(EVENT_FEATURES)})")
    products = ctx.read(PRODUCTS.ref) if PRODUCTS.ref in used else None
    if products is None:
        notes.append(f"no {PRODUCTS.ref}: category_diversity left empty")
    elif products.filter(F.col("category").isNotNull()).isEmpty():
        products = None
        notes.append(f"{PRODUCTS.ref} has no category: category_diversity left empty")
    inputs = feats.Inputs(orders=ctx.read(ORDERS.ref), order_items=ctx.read(ORDER_ITEMS.ref),
                          returns=ctx.read(RETURNS.ref), products=products, events=events)
    return inputs, notes


def require_features(model_inputs: Sequence[str], unavailable: Sequence[str], notes: Sequence[str]) -> None:
    """Raise InputError when the model reads a feature that is null for everyone (its input is missing)."""
    empty = [f for f in model_inputs if f in unavailable]
    if empty:
        raise InputError(f"segments: the model needs {', '.join(empty)}, empty for this shop ({'; '.join(notes)}); "
                         "leave them out of segments.features")


def latest_model_uri(ctx: JobContext) -> str:
    """``segments.model_uri`` or the model of the latest finished fit run in this experiment."""
    if ctx.config.model_uri:
        return ctx.config.model_uri
    import mlflow

    experiment = mlflow.get_experiment_by_name(ctx.platform.tracking.experiment)
    runs = [] if experiment is None else mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"tags.{MODEL_TAG} != '' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    if not runs:
        raise FileNotFoundError("segments.mode=score: no finished fit run with a logged model in experiment "
                                f"{ctx.platform.tracking.experiment!r}; run mode=fit first or set segments.model_uri")
    return runs[0].data.tags[MODEL_TAG]


def log_model(ctx: JobContext, model: PipelineModel) -> str | None:
    if not ctx.run.active:
        return None
    model_uri, _ = ctx.run.log_spark_model(ctx.spark, model)
    ctx.run.set_tags({MODEL_TAG: model_uri})
    return model_uri


def migrations(ctx: JobContext, segments: DataFrame) -> pd.DataFrame:
    """from_segment → to_segment customer counts against the current gold.customer_segments
    (null from = new customer, null to = customer no longer present)."""
    version = ctx.lakehouse.version(CUSTOMER_SEGMENTS)
    if version is None:
        before = ctx.spark.createDataFrame([], "user_id STRING, from_segment INT")
    else:
        before = ctx.lakehouse.read(CUSTOMER_SEGMENTS, version=version).select(
            "user_id", F.col("segment_id").alias("from_segment"))
    now = segments.select("user_id", F.col("segment_id").alias("to_segment"))
    moved = before.join(now, "user_id", "full").groupBy("from_segment", "to_segment").agg(
        F.count(F.lit(1)).alias("customers"))
    table = moved.orderBy(F.col("from_segment").asc_nulls_first(), F.col("to_segment").asc_nulls_first()).toPandas()
    return table.astype({"from_segment": "Int64", "to_segment": "Int64", "customers": "int64"})


def _rows(table: pd.DataFrame) -> list[tuple]:
    """pandas rows as tuples of Python values, NaN/NA → None (a missing value stays null in Delta)."""
    def clean(value):
        if pd.isna(value):
            return None
        return value.item() if hasattr(value, "item") else value

    return [tuple(clean(v) for v in row) for row in table.itertuples(index=False)]


@dataclass
class Outputs:
    """The three gold frames (``segments``: ``fitting.SEGMENT_COLUMNS``), plus profiles and migrations as the
    pandas tables they were built from (for MLflow and the summary)."""

    segments: DataFrame
    profiles: DataFrame
    migrations: DataFrame
    profile_table: pd.DataFrame
    migration_table: pd.DataFrame


def write_outputs(ctx: JobContext, outputs: Outputs) -> None:
    """Overwrite the three gold tables; on failure restore the ones already written."""
    plan = [(outputs.profiles, SEGMENT_PROFILES), (outputs.migrations, SEGMENT_MIGRATIONS),
            (outputs.segments, CUSTOMER_SEGMENTS)]
    ctx.lakehouse.overwrite_all([TableWrite(with_run_metadata(frame, ctx.run.run_id), ref) for frame, ref in plan])


@dataclass
class Customers:
    """The features step's result: every customer's features (persisted), those with orders, the
    reference date and the guest counts."""

    features: DataFrame
    with_orders: DataFrame
    count: int
    reference: dt.date
    guests: dict[str, int]


def validate_inputs(ctx: JobContext, metrics: dict[str, float]) -> tuple[feats.Inputs, list[str], list[str]]:
    """Read the inputs, refuse a model that needs a feature this shop cannot give, quarantine bad
    rows. Returns (valid inputs, features unavailable here, notes)."""
    used = ctx.require_inputs([ORDERS.ref, ORDER_ITEMS.ref, RETURNS.ref], optional=[PRODUCTS.ref, EVENTS.ref])
    inputs, notes = read_inputs(ctx, used)
    for note in notes:
        log.info("segments: %s", note)
    unavailable = feats.unavailable_features(inputs)
    if ctx.config.mode == "fit":
        require_features(ctx.config.features, unavailable, notes)
    valid, rejected = feats.split_inputs(inputs)
    quarantined = quarantine_rejected(ctx.lakehouse, rejected, ctx.job, ctx.run.run_id, "silver.")
    metrics.update({f"quarantined.{k}": v for k, v in quarantined.items()})
    return valid, unavailable, notes


def customer_features(ctx: JobContext, valid: feats.Inputs, metrics: dict[str, float]) -> Customers:
    """Per-customer features at the reference date (``segments.reference_date`` or the day after
    the last order); EmptyOutputError when no customer has an order."""
    config = ctx.config
    reference = (dt.date.fromisoformat(config.reference_date) if config.reference_date
                 else feats.default_reference_date(valid.orders))
    guests = feats.guest_counts(valid, reference)
    features = feats.customer_features(valid, reference).persist(StorageLevel.MEMORY_AND_DISK)
    counts = features.agg(F.count(F.lit(1)).alias("customers"),
                          F.sum(F.col("has_orders").cast("int")).alias("with_orders"),
                          F.sum(F.col("monetary_clamped").cast("int")).alias("clamped")).first()
    with_orders = int(counts["with_orders"] or 0)
    if with_orders == 0:
        raise EmptyOutputError(f"segments: no customer has an order before {reference}; previous outputs kept")
    metrics.update({"customers": counts["customers"], "customers_with_orders": with_orders,
                    "prospects": counts["customers"] - with_orders, "monetary_clamped": counts["clamped"] or 0,
                    **guests})
    ctx.run.log_params({"segments.reference_date_used": reference.isoformat()})
    return Customers(features, features.filter("has_orders"), int(counts["customers"]), reference, guests)


def fit_model(ctx: JobContext, customers: Customers, metrics: dict[str, float]) -> tuple[PipelineModel, str | None]:
    """Choose k (or take ``segments.k``), fit with stable ids against the previous profiles, log
    the model. Returns (model, its MLflow URI)."""
    config = ctx.config
    k, table = select_k(customers.with_orders, int(metrics["customers_with_orders"]), config.features, config,
                        ctx.run)
    if table is not None:
        metrics["silhouette"] = float(table.loc[table["k"] == k, "silhouette"].iloc[0])
    previous = ctx.lakehouse.read(SEGMENT_PROFILES).toPandas() if ctx.lakehouse.exists(SEGMENT_PROFILES) else None
    model, result = fit_with_ids(customers.with_orders, config.features, k, config, previous)
    metrics.update({"k": k, "kmeans_iterations": result.iterations, "kmeans_converged": int(result.converged),
                    "kmeans_cost": result.cost})
    if not result.converged:
        log.warning("K-Means stopped at max_iter=%d before converging (tol=%g)", config.max_iter, config.tol)
    return model, log_model(ctx, model)


def load_model(ctx: JobContext, unavailable: Sequence[str], notes: Sequence[str]) -> tuple[PipelineModel, str]:
    """Score mode: the logged model (``segments.model_uri`` or the latest fit run's)."""
    model_uri = latest_model_uri(ctx)
    model = load_spark_model(ctx.spark, model_uri)
    require_features(model_features(model), unavailable, notes)
    ctx.run.log_params({"segments.model_uri_used": model_uri})
    return model, model_uri


def assign_and_profile(ctx: JobContext, model: PipelineModel, customers: Customers) -> Outputs:
    """Segments for every customer (prospects: segment 0), their profiles and the migrations
    against the current gold table, as the three frames to write."""
    segments = assign(model, customers.with_orders).unionByName(
        prospects(customers.features.filter(~F.col("has_orders")))).persist(StorageLevel.MEMORY_AND_DISK)
    profiles = profile(segments, ALL_FEATURES)
    moved = migrations(ctx, segments)
    return Outputs(
        segments=segments,
        profiles=ctx.spark.createDataFrame(
            _rows(profiles), "segment_id INT, segment_name STRING, customers BIGINT, share DOUBLE, "
            + ", ".join(f"{f} DOUBLE" for f in ALL_FEATURES)),
        migrations=ctx.spark.createDataFrame(_rows(moved), "from_segment INT, to_segment INT, customers BIGINT"),
        profile_table=profiles, migration_table=moved)


def run(ctx: JobContext) -> JobSummary:
    """Segment customers (see module docstring) and return the profile table as summary lines."""
    ctx.run.set_tags({"segments_mode": ctx.config.mode})
    metrics: dict[str, float] = {}
    with ctx.step("validate inputs") as step:
        valid, unavailable, notes = validate_inputs(ctx, metrics)
        step.update(quarantined=sum(v for k, v in metrics.items() if k.startswith("quarantined.")))
    with ctx.step("features") as step:
        customers = customer_features(ctx, valid, metrics)
        step.update(customers=customers.count, with_orders=int(metrics["customers_with_orders"]),
                    reference_date=customers.reference, **customers.guests)
    with ctx.step("choose k + fit K-Means" if ctx.config.mode == "fit" else "load model") as step:
        model, model_uri = (fit_model(ctx, customers, metrics) if ctx.config.mode == "fit"
                            else load_model(ctx, unavailable, notes))
        step.update(k=metrics.get("k"), model=model_uri)
    with ctx.step("assign + profile") as step:
        outputs = assign_and_profile(ctx, model, customers)
        step.update(segments=len(outputs.profile_table), migration_rows=len(outputs.migration_table))
    with ctx.step("write gold") as step:
        write_outputs(ctx, outputs)
        step.update(customers=customers.count)
    ctx.run.log_metrics(metrics)
    ctx.run.log_table(outputs.profile_table, "segment_profiles")
    ctx.run.log_table(outputs.migration_table, "segment_migrations")
    outputs.segments.unpersist()
    customers.features.unpersist()
    return summarize(ctx, customers, outputs, metrics, model_uri, notes)


def summarize(ctx: JobContext, customers: Customers, outputs: Outputs, metrics: dict[str, float],
              model_uri: str | None, notes: Sequence[str]) -> JobSummary:
    """Table counts, k / silhouette / convergence, and the profile table as lines."""
    profiles, guests = outputs.profile_table, customers.guests
    summary = JobSummary(job=ctx.job, run_id=ctx.run.run_id,
                         tables={str(CUSTOMER_SEGMENTS): customers.count, str(SEGMENT_PROFILES): len(profiles),
                                 str(SEGMENT_MIGRATIONS): len(outputs.migration_table)},
                         metrics={k: float(v) for k, v in metrics.items() if k in ("k", "silhouette", "kmeans_converged")})
    shown = profiles[["segment_id", "segment_name", "customers", "share", "recency_days", "frequency",
                      "monetary", "avg_order_value", "views", "tenure_days"]]
    summary.lines.append(f"  mode={ctx.config.mode} reference_date={customers.reference} model={model_uri}")
    summary.lines.append(f"  guest checkouts left out of the customers: {guests['guest_orders_skipped']} orders, "
                         f"{guests['guest_returns_skipped']} returns")
    summary.lines += [f"  {note}" for note in notes]
    summary.lines += ["  " + line for line in shown.to_string(index=False, float_format="{:,.2f}".format)
                      .splitlines()]
    return summary
