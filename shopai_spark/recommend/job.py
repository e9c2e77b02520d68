"""Recommendations job: feedback → ALS (tuned on a split, compared with popularity) → gold tables.

Steps: read the feedback source (silver.events, a ratings table or a MovieLens u.data file),
quarantine bad rows, aggregate to one interaction per (user, item), map ids to dense ints, split,
fit every grid point (MLflow child runs) and the popularity baseline on the same split, refit the
best parameters on all interactions, then compute top-N per user (already-bought items excluded,
cold users get a flagged popularity fallback) and similar items. All outputs are computed and
checked non-empty before any is written; if a write fails, the tables already written in this run
are restored to their previous version. The model is logged and registered in MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.quality import quarantine_rejected, split_valid
from shopai_spark.recommend import interactions as fb
from shopai_spark.recommend.baseline import item_popularity
from shopai_spark.recommend.config import AlsConfig
from shopai_spark.recommend.indexing import build_index, to_ids, to_indices
from shopai_spark.recommend.split import split
from shopai_spark.recommend.topn import collect_item_factors, recommend_all, similar_items
from shopai_spark.recommend.train import best_trial, evaluate_popularity, evaluation_set, fit, tune
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDERS
from shopai_spark.tables import EmptyOutputError, TableRef, TableWrite, with_run_metadata

log = logging.getLogger(__name__)

USER_RECOMMENDATIONS = TableRef("gold", "user_recommendations")
SIMILAR_ITEMS = TableRef("gold", "similar_items")
USER_INDEX = TableRef("gold", "als_user_index")
ITEM_INDEX = TableRef("gold", "als_item_index")
SUMMARY_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "hit_rate", "coverage", "rmse", "mae")


class EmptyInputError(RuntimeError):
    """No usable interaction: nothing is written, previous outputs stay."""


@dataclass
class Feedback:
    """Validated feedback: interactions (see interactions.py), rejected rows per source (with
    ``reason``), every known user_id (cold users included) and an optional fixed test set."""

    interactions: DataFrame
    rejected: dict[str, DataFrame]
    known_users: DataFrame
    inputs: list[TableRef]
    test: DataFrame | None = None


def _user_ids(frame: DataFrame) -> DataFrame:
    return frame.select("user_id").where("user_id IS NOT NULL AND trim(user_id) != ''")


def _validated_ratings(config: AlsConfig, raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    good, rejected = split_valid(raw, fb.rating_rules(config.mode))
    return fb.rated_items(good, config.mode, config.positive_threshold), rejected


def read_feedback(ctx: JobContext) -> Feedback:
    """Read and validate the configured source (``als.source``) into :class:`Feedback`."""
    config, lake = ctx.config.als, ctx.lakehouse
    if config.source == "events":
        events = lake.read(EVENTS.ref)
        good, rejected = split_valid(events, fb.event_rules(config.event_weights))
        reference = None
        if config.half_life_days is not None:
            reference = (pd.Timestamp(config.reference_ts).to_pydatetime() if config.reference_ts
                         else fb.max_timestamp(good))
        interactions = fb.weighted_events(good, config.event_weights, config.half_life_days, reference)
        known = _user_ids(events)
        inputs = [EVENTS.ref]
        if lake.exists(ORDERS.ref):
            known = known.unionByName(_user_ids(lake.read(ORDERS.ref)))
            inputs.append(ORDERS.ref)
        return Feedback(interactions, {str(EVENTS.ref): rejected}, known.distinct(), inputs)
    if config.source == "ratings_table":
        ref = TableRef(*config.ratings_table.split("."))
        raw, name, inputs = lake.read(ref), str(ref), [ref]
    else:
        raw, name, inputs = fb.read_udata(ctx.spark, config.ratings_path), config.ratings_path, []
    interactions, rejected = _validated_ratings(config, raw)
    feedback = Feedback(interactions, {name: rejected}, _user_ids(raw).distinct(), inputs)
    if config.test_path:
        feedback.test, feedback.rejected[config.test_path] = _validated_ratings(
            config, fb.read_udata(ctx.spark, config.test_path))
    return feedback


def excluded_items(indexed: DataFrame, exclude: str) -> DataFrame | None:
    """(user_idx, item_idx) never recommended: bought items, every interaction, or None."""
    if exclude == "none":
        return None
    rows = indexed.where("consumed") if exclude == "purchased" else indexed
    return rows.select("user_idx", "item_idx")


def fallback_recommendations(indexed: DataFrame, items_index: DataFrame, cold_users: DataFrame,
                             n: int) -> DataFrame:
    """Cold users × the ``n`` items with the most distinct users → user_id, rank, sku, score
    (share of users who interacted with the item), is_fallback = true. Only n rows are collected."""
    users = indexed.select("user_idx").distinct().count()
    popular = item_popularity(indexed).orderBy(F.desc("users"), "item_idx").limit(n)
    ranked = to_ids(popular, items=items_index, item_id_col="sku").toPandas().sort_values(
        ["users", "sku"], ascending=[False, True])
    table = pd.DataFrame({"rank": range(1, len(ranked) + 1), "sku": ranked["sku"].to_numpy(),
                          "score": ranked["users"].to_numpy() / max(users, 1)})
    top = cold_users.sparkSession.createDataFrame(table, "rank INT, sku STRING, score DOUBLE")
    return cold_users.crossJoin(F.broadcast(top)).withColumn("is_fallback", F.lit(True))


@dataclass
class Outputs:
    recommendations: DataFrame
    similar: DataFrame
    user_index: DataFrame
    item_index: DataFrame
    counts: dict[str, int]


def build_outputs(ctx: JobContext, model: ALSModel, indexed: DataFrame, users: DataFrame, items: DataFrame,
                  known_users: DataFrame) -> Outputs:
    """Top-N per user (+ fallback for cold known users) and similar items, persisted and counted."""
    config = ctx.config.als
    factors = collect_item_factors(model.itemFactors)
    warm = recommend_all(model.userFactors, factors, config.top_n, excluded_items(indexed, config.exclude),
                         config.block_size)
    warm = to_ids(warm, users, items, item_id_col="sku").withColumn("is_fallback", F.lit(False))
    cold = known_users.join(warm.select("user_id").distinct(), "user_id", "left_anti")
    recs = warm.unionByName(fallback_recommendations(indexed, items, cold, config.top_n)).select(
        "user_id", "rank", "sku", "score", "is_fallback").persist(StorageLevel.MEMORY_AND_DISK)
    similar = similar_items(factors, ctx.spark, config.similar_m, config.block_size,
                            int(ctx.spark.conf.get("spark.sql.shuffle.partitions")))
    similar = to_ids(to_ids(similar, items=items, item_id_col="sku"), items=items, item_idx_col="similar_idx",
                     item_id_col="similar_sku").select("sku", "similar_sku", "rank", "score") \
        .persist(StorageLevel.MEMORY_AND_DISK)
    row = recs.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users"),
                   F.countDistinct(F.when(F.col("is_fallback"), F.col("user_id"))).alias("fallback_users")).first()
    counts = {"recommendation_rows": int(row["rows"]), "recommended_users": int(row["users"]),
              "fallback_users": int(row["fallback_users"]), "similar_rows": similar.count()}
    for name, table in (("recommendation_rows", USER_RECOMMENDATIONS), ("similar_rows", SIMILAR_ITEMS)):
        if counts[name] == 0:
            raise EmptyOutputError(f"als: {table} would be empty; previous outputs kept")
    return Outputs(recs, similar, users.select("user_id", "user_idx"), items.select(F.col("item_id").alias("sku"),
                   "item_idx"), counts)


def write_outputs(ctx: JobContext, outputs: Outputs) -> None:
    """Overwrite the four gold tables; on failure restore the ones already written."""
    plan = [(outputs.user_index, USER_INDEX), (outputs.item_index, ITEM_INDEX),
            (outputs.similar, SIMILAR_ITEMS), (outputs.recommendations, USER_RECOMMENDATIONS)]
    ctx.lakehouse.overwrite_all([TableWrite(with_run_metadata(frame, ctx.run.run_id), ref) for frame, ref in plan])


def log_model(ctx: JobContext, model: ALSModel, indexed: DataFrame) -> tuple[str | None, str | None]:
    """Log the ALS model with signature and input example; register it under ``als.registered_model``.
    Returns (model URI, registered version)."""
    if not ctx.run.active:
        return None, None
    import mlflow.spark
    import pyspark
    from mlflow.models import infer_signature

    example = indexed.select("user_idx", "item_idx").limit(3).toPandas()
    predicted = model.transform(ctx.spark.createDataFrame(example)).toPandas()
    signature = infer_signature(example, predicted[["prediction"]])
    info = mlflow.spark.log_model(model, "model", signature=signature, input_example=example,
                                  registered_model_name=ctx.config.als.registered_model,
                                  pip_requirements=[f"pyspark=={pyspark.__version__}"])
    version = getattr(info, "registered_model_version", None)
    return info.model_uri, None if version is None else str(version)


def metric_table(model_metrics: dict[str, float], baseline: dict[str, float]) -> pd.DataFrame:
    """metric | als | popularity, for the metrics both have."""
    names = [m for m in SUMMARY_METRICS if model_metrics.get(m) is not None]
    return pd.DataFrame({"metric": names, "als": [model_metrics[m] for m in names],
                         "popularity": [baseline.get(m) for m in names]})


def sample_lines(recs: DataFrame, indexed: DataFrame) -> list[str]:
    """A sample user's recommendations next to what that user bought (a handful of rows)."""
    bought = indexed.where("consumed")
    first = bought.select("user_id").orderBy("user_id").first() or recs.select("user_id").orderBy("user_id").first()
    user = first["user_id"]
    had = [r["item_id"] for r in bought.where(F.col("user_id") == user).orderBy("item_id").limit(20).collect()]
    got = recs.where(F.col("user_id") == user).orderBy("rank").collect()
    return [f"  sample user {user}: bought {', '.join(had) or '(nothing)'}",
            "  recommended: " + ", ".join(f"{r['sku']} ({r['score']:.3f})" for r in got)]


def run(ctx: JobContext) -> JobSummary:
    """Train, evaluate and write recommendations (see module docstring)."""
    config = ctx.config.als
    metrics: dict[str, float] = {}
    with ctx.step("read + validate feedback") as step:
        feedback = read_feedback(ctx)
        ctx.run.log_input_versions(ctx.lakehouse, feedback.inputs)
        interactions = feedback.interactions.persist(StorageLevel.MEMORY_AND_DISK)
        quarantined = quarantine_rejected(ctx.lakehouse, feedback.rejected, ctx.job, ctx.run.run_id)
        metrics.update({f"quarantined.{k}": v for k, v in quarantined.items()})
        rows = interactions.count()
        if rows == 0:
            raise EmptyInputError(f"als: no valid interaction in source {config.source!r} "
                                  f"(quarantined: {quarantined or 'none'}); previous outputs kept")
        step.update(interactions=rows, quarantined=sum(quarantined.values()))

    with ctx.step("index ids") as step:
        every = interactions if feedback.test is None else interactions.unionByName(feedback.test)
        users = build_index(every, "user_id", "user_idx").persist(StorageLevel.MEMORY_AND_DISK)
        items = build_index(every, "item_id", "item_idx").persist(StorageLevel.MEMORY_AND_DISK)
        indexed = to_indices(interactions, users, items).persist(StorageLevel.MEMORY_AND_DISK)
        metrics.update({"interactions": rows, "users": users.count(), "items": items.count()})
        step.update(users=int(metrics["users"]), items=int(metrics["items"]))

    with ctx.step("split + tune") as step:
        train, test = ((indexed, to_indices(feedback.test, users, items)) if feedback.test is not None
                       else split(indexed, config))
        data = evaluation_set(train, test, config)
        trials = tune(ctx.config, data)
        best = best_trial(trials, config)
        baseline = evaluate_popularity(data, config)
        metrics.update({f"test_{k}": v for k, v in best.metrics.items() if v is not None})
        metrics.update({f"popularity_{k}": v for k, v in baseline.items() if v is not None})
        if baseline.get("ndcg_at_k"):
            metrics["ndcg_lift_vs_popularity"] = best.metrics["ndcg_at_k"] / baseline["ndcg_at_k"] - 1.0
        ctx.run.log_params({f"als.best.{k}": v for k, v in asdict(best.params).items()}
                           | {"als.best.trial_run_id": best.run_id, "als.trials": len(trials)})
        step.update(trials=len(trials), best=best.params, metric=best.metrics.get(config.selection_metric))

    with ctx.step("final model") as step:
        model = fit(indexed, config, best.params) if config.refit_full else best.model
        data.unpersist()
        step.update(refit=config.refit_full)

    with ctx.step("top-N + similar items") as step:
        outputs = build_outputs(ctx, model, indexed, users, items, feedback.known_users)
        metrics["fallback_share"] = outputs.counts["fallback_users"] / max(outputs.counts["recommended_users"], 1)
        step.update(**outputs.counts)

    with ctx.step("write gold") as step:
        write_outputs(ctx, outputs)
        model_uri, version = log_model(ctx, model, indexed)
        step.update(model=model_uri, version=version)

    table = metric_table(best.metrics, baseline)
    ctx.run.log_metrics(metrics)
    ctx.run.log_table(table, "metrics_vs_popularity")
    lines = [f"  mode={config.mode} source={config.source} split={config.split if feedback.test is None else 'fixed'} "
             f"best={best.params} model={model_uri} version={version}"]
    lines += ["  " + line for line in table.to_string(index=False, float_format="{:.4f}".format).splitlines()]
    lines += sample_lines(outputs.recommendations, indexed)
    for frame in (outputs.recommendations, outputs.similar, indexed, users, items, interactions):
        frame.unpersist()
    shown = ("test_ndcg_at_k", "popularity_ndcg_at_k", "test_rmse", "popularity_rmse", "fallback_share")
    return JobSummary(job=ctx.job, run_id=ctx.run.run_id,
                      tables={str(USER_RECOMMENDATIONS): outputs.counts["recommendation_rows"],
                              str(SIMILAR_ITEMS): outputs.counts["similar_rows"],
                              str(USER_INDEX): int(metrics["users"]), str(ITEM_INDEX): int(metrics["items"])},
                      metrics={k: float(metrics[k]) for k in shown if k in metrics},
                      lines=lines)
