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
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.errors import InputError
from shopai_spark.quality import quarantine_rejected
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, PRODUCTS, RETURNS, TRUTH_SEGMENTS
from shopai_spark.segment import features as feats
from shopai_spark.segment import model as km
from shopai_spark.segment.config import ALL_FEATURES, EVENT_FEATURES, SegmentsConfig
from shopai_spark.segment.metrics import adjusted_rand_index_df
from shopai_spark.segment.profiles import (
    PROSPECT_ID,
    PROSPECT_NAME,
    name_segment,
    profile,
    stable_ids,
    unique_names,
)
from shopai_spark.segment.scaling import model_features, preprocessing_stages, scaler_of, transform_rows
from shopai_spark.segment.select_k import CURVES, choose_k, evaluate_k, plot_curve
from shopai_spark.tables import EmptyOutputError, TableRef, TableWrite, with_run_metadata
from shopai_spark.tracking import JobRun, load_spark_model

log = logging.getLogger(__name__)

CUSTOMER_SEGMENTS = TableRef("gold", "customer_segments")
SEGMENT_PROFILES = TableRef("gold", "segment_profiles")
SEGMENT_MIGRATIONS = TableRef("gold", "segment_migrations")
MODEL_TAG = "segments_model_uri"
SEGMENT_COLUMNS = ("user_id", "segment_id", "segment_name", "distance_to_centroid", *ALL_FEATURES)


# ---------------------------------------------------------------------------------------------
# fitting (used by the job and by bench/bench_segments.py)


def select_k(customers: DataFrame, rows: int, features: Sequence[str], config: SegmentsConfig,
             run: JobRun) -> tuple[int, pd.DataFrame | None]:
    """k from config, or measured on a sample of at most ``config.selection_sample`` customers
    (cost and silhouette for k_min..k_max, logged as a table and two PNG curves)."""
    if config.k is not None:
        return config.k, None
    sample = customers
    if rows > config.selection_sample:
        sample = customers.sample(fraction=config.selection_sample / rows, seed=config.seed)
    scaled = (Pipeline(stages=preprocessing_stages(features)).fit(sample).transform(sample)
              .select(km.FEATURES_COL).persist(StorageLevel.MEMORY_AND_DISK))
    sample_rows = scaled.count()
    ks = range(config.k_min, min(config.k_max, sample_rows - 1) + 1)
    if not ks:
        raise ValueError(f"segments: {sample_rows} customers in the sample are too few for k >= {config.k_min}")
    table = evaluate_k(scaled, ks, config)
    scaled.unpersist()
    k = choose_k(table, config.silhouette_tolerance)
    run.log_table(table, "k_selection")
    for column in CURVES:
        run.log_figure(plot_curve(table, column, k), f"k_selection_{column}")
    return k, table


def previous_centroids(previous: pd.DataFrame | None, model: PipelineModel) -> dict[int, list[float]] | None:
    """Previous run's segment centroids (original units, from gold.segment_profiles) mapped through
    ``model``'s scaler; None when there is no usable previous profile."""
    features = model_features(model)
    if previous is None or not set(features) <= set(previous.columns):
        return None
    fitted = previous[previous["segment_id"] != PROSPECT_ID].dropna(subset=features)
    if fitted.empty:
        return None
    scaled = transform_rows(fitted[features].to_numpy(), features, scaler_of(model))
    return dict(zip(fitted["segment_id"].astype(int), scaled, strict=True))


def fit_with_ids(customers: DataFrame, features: Sequence[str], k: int, config: SegmentsConfig,
                 previous: pd.DataFrame | None) -> tuple[PipelineModel, km.FitResult]:
    """Fit scaler + K-Means, then give clusters stable ids (see profiles.py) and names; returns the
    pipeline with the id/name mapping stage appended, and the fit result."""
    result = km.fit(customers, features, k, config)
    by_cluster = profile(result.model.transform(customers), features, by=(km.CLUSTER_COL,))
    clusters = by_cluster[km.CLUSTER_COL].astype(int).tolist()
    if sorted(clusters) != list(range(k)):
        raise RuntimeError(f"segments: K-Means left empty clusters ({len(clusters)} of {k} used); lower k")
    new = transform_rows(by_cluster[list(features)].to_numpy(), features, scaler_of(result.model))
    monetary = by_cluster["monetary"] if "monetary" in features else by_cluster["customers"]
    ids = dict(zip(clusters, stable_ids(new, previous_centroids(previous, result.model), monetary.tolist()),
                   strict=True))
    centers = km.centers(result.model)
    names = unique_names({ids[c]: name_segment(centers[c], features) for c in range(k)})
    return km.with_segment_map(result.model, {c: (ids[c], names[ids[c]]) for c in range(k)}), result


def assign(model: PipelineModel, customers: DataFrame) -> DataFrame:
    """Customers with orders → SEGMENT_COLUMNS, by a fitted pipeline with the mapping stage."""
    scored = km.with_distance(model.transform(customers), km.centers(model))
    return scored.select(*SEGMENT_COLUMNS)


def prospects(customers: DataFrame) -> DataFrame:
    """Customers without orders → SEGMENT_COLUMNS in segment 0 (no distance)."""
    return customers.select(
        "user_id", F.lit(PROSPECT_ID).alias("segment_id"), F.lit(PROSPECT_NAME).alias("segment_name"),
        F.lit(None).cast("double").alias("distance_to_centroid"), *ALL_FEATURES)


# ---------------------------------------------------------------------------------------------
# job steps


def read_inputs(ctx: JobContext, used: list[TableRef]) -> tuple[feats.Inputs, list[str]]:
    """The silver frames, and one note per input the shop does not have: ``events`` is None without
    silver.events, ``products`` None without silver.products or when no product has a category
    (products derived from order lines). Orders, order_items and returns are required
    (MissingTableError)."""
    lake = ctx.lakehouse
    notes = []
    events = lake.read(EVENTS.ref) if EVENTS.ref in used else None
    if events is None:
        notes.append(f"no {EVENTS.ref}: behaviour features left empty ({', '.join(EVENT_FEATURES)})")
    products = lake.read(PRODUCTS.ref) if PRODUCTS.ref in used else None
    if products is None:
        notes.append(f"no {PRODUCTS.ref}: category_diversity left empty")
    elif products.filter(F.col("category").isNotNull()).isEmpty():
        products = None
        notes.append(f"{PRODUCTS.ref} has no category: category_diversity left empty")
    inputs = feats.Inputs(orders=lake.read(ORDERS.ref), order_items=lake.read(ORDER_ITEMS.ref),
                          returns=lake.read(RETURNS.ref), products=products, events=events)
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
    segments: DataFrame
    profiles: DataFrame
    migrations: DataFrame


def write_outputs(ctx: JobContext, outputs: Outputs) -> None:
    """Overwrite the three gold tables; on failure restore the ones already written."""
    plan = [(outputs.profiles, SEGMENT_PROFILES), (outputs.migrations, SEGMENT_MIGRATIONS),
            (outputs.segments, CUSTOMER_SEGMENTS)]
    ctx.lakehouse.overwrite_all([TableWrite(with_run_metadata(frame, ctx.run.run_id), ref) for frame, ref in plan])


def run(ctx: JobContext) -> JobSummary:
    """Segment customers (see module docstring) and return the profile table as summary lines."""
    config = ctx.config
    ctx.run.set_tags({"segments_mode": config.mode})
    used = ctx.require_inputs([ORDERS.ref, ORDER_ITEMS.ref, RETURNS.ref], optional=[PRODUCTS.ref, EVENTS.ref])
    metrics: dict[str, float] = {}

    with ctx.step("validate inputs") as step:
        inputs, notes = read_inputs(ctx, used)
        for note in notes:
            log.info("segments: %s", note)
        unavailable = feats.unavailable_features(inputs)
        if config.mode == "fit":
            require_features(config.features, unavailable, notes)
        valid, rejected = feats.split_inputs(inputs)
        quarantined = quarantine_rejected(ctx.lakehouse, rejected, ctx.job, ctx.run.run_id, "silver.")
        metrics.update({f"quarantined.{k}": v for k, v in quarantined.items()})
        step.update(quarantined=sum(quarantined.values()))

    with ctx.step("features") as step:
        reference = (dt.date.fromisoformat(config.reference_date) if config.reference_date
                     else feats.default_reference_date(valid.orders))
        guests = feats.guest_counts(valid, reference)
        features = feats.customer_features(valid, reference).persist(StorageLevel.MEMORY_AND_DISK)
        counts = features.agg(F.count(F.lit(1)).alias("customers"),
                              F.sum(F.col("has_orders").cast("int")).alias("with_orders"),
                              F.sum(F.col("monetary_clamped").cast("int")).alias("clamped")).first()
        customers = features.filter("has_orders")
        with_orders = int(counts["with_orders"] or 0)
        if with_orders == 0:
            raise EmptyOutputError(f"segments: no customer has an order before {reference}; previous outputs kept")
        metrics.update({"customers": counts["customers"], "customers_with_orders": with_orders,
                        "prospects": counts["customers"] - with_orders, "monetary_clamped": counts["clamped"] or 0,
                        **guests})
        ctx.run.log_params({"segments.reference_date_used": reference.isoformat()})
        step.update(customers=int(counts["customers"]), with_orders=with_orders, reference_date=reference, **guests)

    if config.mode == "fit":
        with ctx.step("choose k") as step:
            k, table = select_k(customers, with_orders, config.features, config, ctx.run)
            if table is not None:
                metrics["silhouette"] = float(table.loc[table["k"] == k, "silhouette"].iloc[0])
            step.update(k=k)
        with ctx.step("fit K-Means") as step:
            previous = ctx.lakehouse.read(SEGMENT_PROFILES).toPandas() if ctx.lakehouse.exists(SEGMENT_PROFILES) \
                else None
            model, result = fit_with_ids(customers, config.features, k, config, previous)
            metrics.update({"k": k, "kmeans_iterations": result.iterations, "kmeans_converged": int(result.converged),
                            "kmeans_cost": result.cost})
            if not result.converged:
                log.warning("K-Means stopped at max_iter=%d before converging (tol=%g)", config.max_iter, config.tol)
            model_uri = log_model(ctx, model)
            step.update(iterations=result.iterations, converged=result.converged, model=model_uri)
    else:
        with ctx.step("load model") as step:
            model_uri = latest_model_uri(ctx)
            model = load_spark_model(ctx.spark, model_uri)
            require_features(model_features(model), unavailable, notes)
            ctx.run.log_params({"segments.model_uri_used": model_uri})
            step.update(model=model_uri)

    with ctx.step("assign + profile") as step:
        segments = assign(model, customers).unionByName(prospects(features.filter(~F.col("has_orders"))))
        segments = segments.persist(StorageLevel.MEMORY_AND_DISK)
        profiles = profile(segments, ALL_FEATURES)
        moved = migrations(ctx, segments)
        if ctx.lakehouse.exists(TRUTH_SEGMENTS):
            truth = ctx.lakehouse.read(TRUTH_SEGMENTS).select("user_id", F.col("segment_id").alias("truth"))
            metrics["truth_ari"] = adjusted_rand_index_df(segments.join(truth, "user_id"), "segment_id", "truth")
        step.update(segments=len(profiles), migration_rows=len(moved))

    with ctx.step("write gold") as step:
        outputs = Outputs(
            segments=segments,
            profiles=ctx.spark.createDataFrame(
                _rows(profiles), "segment_id INT, segment_name STRING, customers BIGINT, share DOUBLE, "
                + ", ".join(f"{f} DOUBLE" for f in ALL_FEATURES)),
            migrations=ctx.spark.createDataFrame(_rows(moved), "from_segment INT, to_segment INT, customers BIGINT"),
        )
        write_outputs(ctx, outputs)
        step.update(customers=int(counts["customers"]))

    ctx.run.log_metrics(metrics)
    ctx.run.log_table(profiles, "segment_profiles")
    ctx.run.log_table(moved, "segment_migrations")
    segments.unpersist()
    features.unpersist()

    summary = JobSummary(job=ctx.job, run_id=ctx.run.run_id,
                         tables={str(CUSTOMER_SEGMENTS): int(counts["customers"]),
                                 str(SEGMENT_PROFILES): len(profiles), str(SEGMENT_MIGRATIONS): len(moved)},
                         metrics={k: float(v) for k, v in metrics.items()
                                  if k in ("k", "silhouette", "kmeans_converged", "truth_ari")})
    shown = profiles[["segment_id", "segment_name", "customers", "share", "recency_days", "frequency",
                      "monetary", "avg_order_value", "views", "tenure_days"]]
    summary.lines.append(f"  mode={config.mode} reference_date={reference} model={model_uri}")
    summary.lines.append(f"  guest checkouts left out of the customers: {guests['guest_orders_skipped']} orders, "
                         f"{guests['guest_returns_skipped']} returns")
    summary.lines += [f"  {note}" for note in notes]
    summary.lines += ["  " + line for line in shown.to_string(index=False, float_format="{:,.2f}".format)
                      .splitlines()]
    return summary
