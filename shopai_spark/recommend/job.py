"""Recommendations job: feedback → ALS, item-based CF and popularity, judged on the same held-out
rows → the lists of the one that wins on validation → gold tables.

Steps: read the feedback source (silver.events, silver.orders + order_items net of returns, both,
a ratings table or a MovieLens u.data file), quarantine bad rows, aggregate to one interaction per
(user, item), map ids to dense ints, split off the test rows, choose the grid point on a
validation split of the training rows (MLflow child runs) and the served recommender (ALS,
item-based CF or popularity, the best there), score all three once on the test rows, refit on all
interactions, then compute top-N per user (already-bought items excluded, cold users get a flagged
popularity fallback) and similar items. All outputs are computed and checked non-empty before any
is written; the run ledger undoes a failed run's writes. The model is logged and registered in
MLflow, and its item factors are stored for fold-in runs (``als.serving=fold_in``: only the
customers who arrived since, folded into that model; :mod:`~shopai_spark.recommend.serving`).

Guest orders (null user_id) are left out of every per-user step and counted
(``guest_order_lines_skipped``); the interactions each source gave are logged as
``interactions_from_<source>`` and shown in the summary.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import asdict, dataclass, field

import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopai_spark.errors import EmptyInputError, MissingTableError
from shopai_spark.lineage import cut_lineage
from shopai_spark.quality import QUARANTINE, quarantine_rejected, split_valid
from shopai_spark.recommend import interactions as fb
from shopai_spark.recommend.baseline import item_popularity
from shopai_spark.recommend.config import AlsConfig
from shopai_spark.recommend.foldin import fold_in
from shopai_spark.recommend.indexing import build_index, to_ids, to_indices
from shopai_spark.recommend.itemcf import item_cf_recommend, item_neighbours
from shopai_spark.recommend.serving import (
    ITEM_FACTORS,
    ModelState,
    customers_to_serve,
    model_state_table,
    numbered_users,
    read_model_state,
)
from shopai_spark.recommend.split import split
from shopai_spark.recommend.topn import collect_item_factors, recommend_all, similar_items
from shopai_spark.recommend.train import (
    RECOMMENDERS,
    Models,
    Selection,
    evaluate,
    evaluate_item_cf,
    evaluate_popularity,
    evaluation_set,
    fit,
    ranking_feedback,
    select_params,
)
from shopai_spark.runs import NothingChanged
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import EVENTS, ORDER_ITEMS, ORDERS, RETURNS
from shopai_spark.tables import EmptyOutputError, Lakehouse, TableRef, TableWrite, with_run_metadata

log = logging.getLogger(__name__)

USER_RECOMMENDATIONS = TableRef("gold", "user_recommendations")
SIMILAR_ITEMS = TableRef("gold", "similar_items")
USER_INDEX = TableRef("gold", "als_user_index")
ITEM_INDEX = TableRef("gold", "als_item_index")
OUTPUTS = (USER_RECOMMENDATIONS, SIMILAR_ITEMS, USER_INDEX, ITEM_INDEX, ITEM_FACTORS)
APPENDS = (QUARANTINE,)
SUMMARY_METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "hit_rate", "coverage", "rmse", "mae")
SHOP_SOURCES = ("events", "orders", "events+orders")


@dataclass
class Feedback:
    """Validated feedback: interactions per source (``parts``: ``events``, ``orders`` or the ratings
    source's name → INTERACTION_COLUMNS, see interactions.py), rejected rows per input (with
    ``reason``), every known user_id (cold users included), the (user_id, item_id) bought per
    silver.order_items (``purchased``, None without order tables or for a ratings source), the
    guest order lines left out (None when no order line was read) and an optional fixed test set."""

    parts: dict[str, DataFrame]
    rejected: dict[str, DataFrame]
    known_users: DataFrame
    purchased: DataFrame | None = None
    guest_order_lines: int | None = None
    test: DataFrame | None = None


def _user_ids(frame: DataFrame) -> DataFrame:
    return frame.select("user_id").where("user_id IS NOT NULL AND trim(user_id) != ''")


def _validated_ratings(config: AlsConfig, raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    good, rejected = split_valid(raw, fb.rating_rules(config.mode))
    return fb.rated_items(good, config.mode, config.relevant_min_rating, config.feedback_min_rating,
                          config.feedback_weight), rejected


def _orders_hint(lake: Lakehouse, source: str) -> str:
    """How to use silver.orders + order_items when they exist and ``source`` (events or
    events+orders) gave nothing; "" without them."""
    if not (lake.exists(ORDERS.ref) and lake.exists(ORDER_ITEMS.ref)):
        return ""
    if source == "events":
        return (f"; the orders in {ORDERS.ref} and {ORDER_ITEMS.ref} were ignored (als.source=events): "
                "recommend from them with --set als.source=orders (or events+orders)")
    return f"; {ORDERS.ref} and {ORDER_ITEMS.ref} exist: recommend from the orders alone with --set als.source=orders"


def check_shop_tables(lake: Lakehouse, source: str) -> None:
    """Raise MissingTableError, before any work, when a table ``source`` needs does not exist; the
    message names the table and the source that would work with the tables there are."""
    if source in ("events", "events+orders") and not lake.exists(EVENTS.ref):
        raise MissingTableError(
            f"als: {EVENTS.ref} not found at {lake.location(EVENTS.ref)} (als.source={source})"
            + (_orders_hint(lake, source)
               or ": ingest an event export, or ingest an order export and --set als.source=orders"))
    if source in ("orders", "events+orders"):
        missing = [t.ref for t in (ORDERS, ORDER_ITEMS) if not lake.exists(t.ref)]
        if missing:
            hint = (f"; {EVENTS.ref} exists: recommend from it with --set als.source=events"
                    if lake.exists(EVENTS.ref) else ": ingest an order export first")
            raise MissingTableError(f"als: {missing[0]} not found at {lake.location(missing[0])} "
                                    f"(als.source={source}){hint}")


def decay_reference(config: AlsConfig, frames: list[tuple[DataFrame, str]]) -> dt.datetime | None:
    """"Now" of the decay: None without a half-life, else ``als.reference_ts``, else the latest value
    of the (frame, timestamp column) pairs (one aggregate each; None when they have no rows)."""
    if config.half_life_days is None:
        return None
    if config.reference_ts:
        return pd.Timestamp(config.reference_ts).to_pydatetime()
    latest = [fb.max_timestamp(frame, column) for frame, column in frames]
    return max((t for t in latest if t is not None), default=None)


@dataclass
class ShopTables:
    """What a shop source reads: valid events (None unless the source uses events), orders and their
    lines (None when absent), returns (when subtracted), the known-user frames and the rejected
    events."""

    events: DataFrame | None = None
    orders: DataFrame | None = None
    lines: DataFrame | None = None
    returns: DataFrame | None = None
    known: list[DataFrame] = field(default_factory=list)
    rejected: dict[str, DataFrame] = field(default_factory=dict)


def read_shop_tables(ctx: JobContext) -> ShopTables:
    """The silver tables ``als.source`` needs (MissingTableError names a missing one) and those
    that give known users, purchases and guests whatever the source."""
    config = ctx.config
    check_shop_tables(ctx.lakehouse, config.source)
    returns = [RETURNS.ref] if config.source != "events" and config.subtract_returns else []
    used = ctx.require_inputs([], optional=[EVENTS.ref, ORDERS.ref, ORDER_ITEMS.ref, *returns])
    shop = ShopTables()
    if EVENTS.ref in used:
        raw = ctx.read(EVENTS.ref)
        shop.known.append(_user_ids(raw))
        if config.source != "orders":
            shop.events, shop.rejected[str(EVENTS.ref)] = split_valid(raw, fb.event_rules(config.event_weights))
    if ORDERS.ref in used:
        shop.orders = ctx.read(ORDERS.ref)
        shop.known.append(_user_ids(shop.orders))
        if ORDER_ITEMS.ref in used:
            shop.lines = fb.order_lines(ctx.read(ORDER_ITEMS.ref), shop.orders)
    if RETURNS.ref in used:
        shop.returns = ctx.read(RETURNS.ref)
    return shop


def read_shop_feedback(ctx: JobContext) -> Feedback:
    """``als.source`` events, orders or events+orders → :class:`Feedback` (:func:`shop_feedback` of
    :func:`read_shop_tables`)."""
    return shop_feedback(ctx.config, read_shop_tables(ctx))


def shop_feedback(config: AlsConfig, shop: ShopTables) -> Feedback:
    """The tables of a shop source → :class:`Feedback`. Known users are the customers of
    silver.events and silver.orders (whichever exist); the order lines, when both order tables
    exist, give ``purchased`` and the guest count whatever the source."""
    use_orders = config.source != "events"
    timed = [(shop.events, "event_ts")] if shop.events is not None else []
    if use_orders:
        timed.append((shop.orders, "order_ts"))
    reference = decay_reference(config, timed)
    # no reference (none configured, no timestamp found) means the inputs have no row: nothing to decay
    half_life = config.half_life_days if reference is not None else None
    parts: dict[str, DataFrame] = {}
    if shop.events is not None:
        parts["events"] = fb.weighted_events(shop.events, config.event_weights, half_life, reference)
    if use_orders:
        parts["orders"] = fb.ordered_items(shop.lines, shop.returns, config.order_quantity_weight,
                                           config.order_weight, half_life, reference)
    guests = None if shop.lines is None else shop.lines.where("guest").count()
    purchased = None if shop.lines is None else fb.purchased_items(shop.lines)
    known_users = functools.reduce(DataFrame.unionByName, shop.known).distinct()
    return Feedback(parts, shop.rejected, known_users, purchased, guests)


def read_feedback(ctx: JobContext) -> Feedback:
    """Read and validate the configured source (``als.source``) into :class:`Feedback`."""
    config = ctx.config
    if config.source in SHOP_SOURCES:
        return read_shop_feedback(ctx)
    if config.source == "ratings_table":
        ref = TableRef(*config.ratings_table.split("."))
        ctx.require_inputs([ref])
        raw, name = ctx.read(ref), str(ref)
    else:
        raw, name = fb.read_udata(ctx.spark, config.ratings_path), config.ratings_path
    interactions, rejected = _validated_ratings(config, raw)
    feedback = Feedback({config.source: interactions}, {name: rejected}, _user_ids(raw).distinct())
    if config.test_path:
        feedback.test, feedback.rejected[config.test_path] = _validated_ratings(
            config, fb.read_udata(ctx.spark, config.test_path))
    return feedback


def combine_parts(parts: dict[str, DataFrame]) -> tuple[DataFrame, dict[str, int]]:
    """Interactions per source → (the interactions summed per (user, item), computed with their
    lineage cut (:func:`~shopai_spark.lineage.cut_lineage`: every later step starts from these rows,
    not from the source tables); the rows each source gave). Several sources are tagged, persisted
    and counted in one pass before summing."""
    if len(parts) == 1:
        ((name, frame),) = parts.items()
        interactions = cut_lineage(frame)
        return interactions, {name: interactions.count()}
    tagged = functools.reduce(DataFrame.unionByName, [frame.withColumn("part", F.lit(name))
                                                      for name, frame in parts.items()])
    tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)
    counted = {row["part"]: int(row["count"]) for row in tagged.groupBy("part").count().collect()}
    interactions = cut_lineage(fb.summed_interactions(tagged))
    tagged.unpersist()
    return interactions, {name: counted.get(name, 0) for name in parts}


def excluded_items(indexed: DataFrame, exclude: str, purchased: DataFrame | None = None,
                   columns: tuple[str, str] = ("user_idx", "item_idx")) -> DataFrame | None:
    """The ``columns`` pairs (default user_idx, item_idx; or user_id, item_id) never recommended:
    ``purchased`` bought items (``consumed`` interactions, ratings of any value included, plus
    ``purchased``, the pairs of order lines), ``interacted`` also every other interaction, ``none``
    None. Pairs may repeat (the top-N collects them into sets)."""
    if exclude == "none":
        return None
    rows = (indexed.where("consumed") if exclude == "purchased" else indexed).select(*columns)
    return rows if purchased is None else rows.unionByName(purchased.select(*columns))


def fallback_recommendations(indexed: DataFrame, items_index: DataFrame, users: DataFrame, n: int,
                             bought: DataFrame | None = None, listed: DataFrame | None = None) -> DataFrame:
    """Users (user_id) × the items with the most distinct users, minus the items each bought
    (``bought``: user_id, item_id, e.g. from silver.order_items) and the items already on their
    list (``listed``: user_id, sku; the fallback's ranks continue after them), up to rank ``n`` →
    user_id, rank, sku, score (share of users who interacted with the item), is_fallback = true.
    Cold users get a whole list, users with a short list are topped up. Collects n + (most items
    one user skips) rows."""
    total_users = indexed.select("user_idx").distinct().count()
    skipped = []
    if bought is not None:
        skipped.append(bought.select("user_id", F.col("item_id").alias("sku")))
    if listed is not None:
        skipped.append(listed.select("user_id", "sku"))
    skip = functools.reduce(DataFrame.unionByName, skipped).join(users, "user_id").distinct() if skipped else None
    most_skipped = 0 if skip is None else skip.groupBy("user_id").count().agg(F.max("count")).first()[0] or 0
    popular = to_ids(item_popularity(indexed), items=items_index, item_id_col="sku") \
        .orderBy(F.desc("users"), "sku").limit(n + most_skipped)   # ties: by sku, not by index number
    ranked = popular.toPandas().sort_values(["users", "sku"], ascending=[False, True])
    table = pd.DataFrame({"rank": range(1, len(ranked) + 1), "sku": ranked["sku"].to_numpy(),
                          "score": ranked["users"].to_numpy() / max(total_users, 1)})
    top = users.sparkSession.createDataFrame(table, "rank INT, sku STRING, score DOUBLE")
    recs = users.crossJoin(F.broadcast(top))
    if skip is not None:
        by_rank = Window.partitionBy("user_id").orderBy("rank")
        recs = recs.join(skip, ["user_id", "sku"], "left_anti").withColumn("rank", F.row_number().over(by_rank))
    if listed is not None:
        on_list = listed.groupBy("user_id").agg(F.count(F.lit(1)).alias("_listed"))
        recs = recs.join(on_list, "user_id", "left").withColumn(
            "rank", F.col("rank") + F.coalesce("_listed", F.lit(0))).drop("_listed")
    return recs.where(F.col("rank") <= n).withColumn("is_fallback", F.lit(True))


@dataclass
class Outputs:
    recommendations: DataFrame
    similar: DataFrame
    user_index: DataFrame
    item_index: DataFrame
    counts: dict[str, int]


def ranked_lists(ctx: JobContext, served: str, model: ALSModel, feedback: DataFrame,
                 excluded: DataFrame | None) -> tuple[DataFrame | None, DataFrame]:
    """(the served recommender's top ``top_n`` per user with feedback → user_idx, rank, item_idx,
    score, or None when popularity is served; similar items → item_idx, rank, similar_idx, score,
    from the model's factors or item-based CF as ``als.similar_items_from`` says)."""
    config = ctx.config
    factors = (collect_item_factors(model.itemFactors) if served == "als" or config.similar_items_from == "factors"
               else None)
    neighbours = None
    if "item_cf" in (served, config.similar_items_from):
        neighbours = item_neighbours(feedback, max(config.item_cf_neighbours, config.similar_m), config.item_cf_shrinkage,
                                     config.item_cf_max_user_items).persist(StorageLevel.MEMORY_AND_DISK)
    warm = None
    if served == "als":
        warm = recommend_all(model.userFactors, factors, config.top_n, excluded, config.block_size)
    elif served == "item_cf":
        kept = neighbours.where(F.col("rank") <= config.item_cf_neighbours)
        warm = item_cf_recommend(feedback.select("user_idx"), feedback, kept, config.top_n, excluded)
    if config.similar_items_from == "item_cf":
        similar = neighbours.where(F.col("rank") <= config.similar_m).select(
            "item_idx", "rank", F.col("other_idx").alias("similar_idx"), F.col("similarity").alias("score"))
    else:
        similar = similar_items(factors, ctx.spark, config.similar_m, config.block_size,
                                int(ctx.spark.conf.get("spark.sql.shuffle.partitions")))
    return warm, similar


def build_outputs(ctx: JobContext, model: ALSModel, indexed: DataFrame, users: DataFrame, items: DataFrame,
                  known_users: DataFrame, purchased: DataFrame | None = None, served: str = "als") -> Outputs:
    """Top-N per user from the ``served`` recommender (als: the ranking ``model``; item_cf;
    popularity: the fallback for everyone) + the popularity fallback for cold known users and after
    the last item of a list shorter than ``top_n`` (item-based CF: few neighbours), and
    similar items, persisted and counted. ``purchased`` (user_id, item_id bought per
    silver.order_items) is excluded too, unless ``als.exclude`` is none."""
    config = ctx.config
    if config.exclude == "none":
        purchased = None
    excluded = excluded_items(indexed, config.exclude,
                              None if purchased is None else to_indices(purchased, users, items))
    warm, similar = ranked_lists(ctx, served, model, ranking_feedback(indexed, config), excluded)
    if warm is not None:
        warm = to_ids(warm, users, items, item_id_col="sku").persist(StorageLevel.MEMORY_AND_DISK)
    bought = excluded_items(indexed, config.exclude, purchased, ("user_id", "item_id"))
    recs = topped_up(ctx, warm, known_users, fb.training_feedback(indexed, config.mode), items, bought) \
        .withColumn("folded_in", F.lit(False)).persist(StorageLevel.MEMORY_AND_DISK)
    similar = to_ids(to_ids(similar, items=items, item_id_col="sku"), items=items, item_idx_col="similar_idx",
                     item_id_col="similar_sku").select("sku", "similar_sku", "rank", "score") \
        .persist(StorageLevel.MEMORY_AND_DISK)
    counts = list_counts(recs) | {"similar_rows": similar.count()}
    if warm is not None:
        warm.unpersist()
    for name, table in (("recommendation_rows", USER_RECOMMENDATIONS), ("similar_rows", SIMILAR_ITEMS)):
        if counts[name] == 0:
            raise EmptyOutputError(f"als: {table} would be empty; previous outputs kept")
    return Outputs(recs, similar, users.select("user_id", "user_idx"), items.select(F.col("item_id").alias("sku"),
                   "item_idx"), counts)


def topped_up(ctx: JobContext, warm: DataFrame | None, users: DataFrame, training: DataFrame, items: DataFrame,
              bought: DataFrame | None) -> DataFrame:
    """The ranked lists ``warm`` (user_id, rank, sku, score; read twice, so pass it persisted; None:
    no list) of ``users`` (user_id) with the popularity fallback after the last item of a list
    shorter than ``top_n`` and as the whole list of a user without one → user_id, rank, sku, score,
    is_fallback. Popularity is counted on ``training`` (user_idx, item_idx, …; ``items``: item_id,
    item_idx); ``bought`` (user_id, item_id) is never in a fallback."""
    if warm is None:
        warm = ctx.spark.createDataFrame([], "user_id STRING, rank INT, sku STRING, score DOUBLE")
    warm = warm.withColumn("is_fallback", F.lit(False))
    full = warm.groupBy("user_id").count().where(F.col("count") >= ctx.config.top_n).select("user_id")
    short = users.join(full, "user_id", "left_anti")   # cold users and short lists
    fallback = fallback_recommendations(training, items, short, ctx.config.top_n, bought, listed=warm)
    return warm.unionByName(fallback).select("user_id", "rank", "sku", "score", "is_fallback")


def list_counts(recs: DataFrame) -> dict[str, int]:
    """Lists (user_id, rank, is_fallback, …) → recommendation_rows, recommended_users,
    fallback_users (whole list from popularity), topped_up_users (a model's list topped up): one
    aggregate."""
    row = recs.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users"),
                   F.countDistinct(F.when(F.col("is_fallback") & (F.col("rank") == 1), F.col("user_id"))).alias("fallback"),
                   F.countDistinct(F.when(F.col("is_fallback"), F.col("user_id"))).alias("any_fallback")).first()
    return {"recommendation_rows": int(row["rows"]), "recommended_users": int(row["users"]),
            "fallback_users": int(row["fallback"]), "topped_up_users": int(row["any_fallback"] - row["fallback"])}


def write_outputs(ctx: JobContext, outputs: Outputs, model_state: DataFrame) -> None:
    """Overwrite the five gold tables (the id maps, the model state, similar items, the lists); the
    run ledger restores them all when a later one fails."""
    plan = [(outputs.user_index, USER_INDEX), (outputs.item_index, ITEM_INDEX), (model_state, ITEM_FACTORS),
            (outputs.similar, SIMILAR_ITEMS), (outputs.recommendations, USER_RECOMMENDATIONS)]
    ctx.lakehouse.overwrite_all([TableWrite(with_run_metadata(frame, ctx.run.run_id), ref) for frame, ref in plan])


def log_model(ctx: JobContext, model: ALSModel, indexed: DataFrame) -> tuple[str | None, str | None]:
    """Log the ALS model with signature and input example; register it under ``als.registered_model``.
    Returns (model URI, registered version)."""
    if not ctx.run.active:
        return None, None
    from mlflow.models import infer_signature

    example = indexed.select("user_idx", "item_idx").limit(3).toPandas()
    predicted = model.transform(ctx.spark.createDataFrame(example)).toPandas()
    signature = infer_signature(example, predicted[["prediction"]])
    return ctx.run.log_spark_model(ctx.spark, model, signature=signature, input_example=example,
                                   registered_model_name=ctx.config.registered_model)


def metric_table(tested: dict[str, dict[str, float]]) -> pd.DataFrame:
    """metric | als | item_cf | popularity, for the metrics ALS has."""
    names = [m for m in SUMMARY_METRICS if tested["als"].get(m) is not None]
    return pd.DataFrame({"metric": names, **{name: [tested[name].get(m) for m in names]
                                              for name in ("als", "item_cf", "popularity")}})


def sample_lines(recs: DataFrame, indexed: DataFrame) -> list[str]:
    """A sample user's recommendations next to what that user bought (a handful of rows)."""
    bought = indexed.where("consumed")
    first = bought.select("user_id").orderBy("user_id").first() or recs.select("user_id").orderBy("user_id").first()
    user = first["user_id"]
    had = [r["item_id"] for r in bought.where(F.col("user_id") == user).orderBy("item_id").limit(20).collect()]
    got = recs.where(F.col("user_id") == user).orderBy("rank").collect()
    return [f"  sample user {user}: bought {', '.join(had) or '(nothing)'}",
            "  recommended: " + ", ".join(f"{r['sku']} ({r['score']:.3f})" for r in got)]


def source_line(rows: int, from_source: dict[str, int], guest_order_lines: int | None) -> str:
    """``  interactions: 1,300 (from events 1,000, from orders 400, summed per user and item); guest
    order lines skipped: 12`` (the guest part only when order lines were read)."""
    parts = ", ".join(f"from {name} {n:,}" for name, n in from_source.items())
    line = f"  interactions: {rows:,} ({parts}{', summed per user and item' if len(from_source) > 1 else ''})"
    return line if guest_order_lines is None else f"{line}; guest order lines skipped: {guest_order_lines:,}"


@dataclass
class Indexed:
    """Interactions with dense ids: ``interactions`` (user_idx, item_idx, rating, ts), the id maps
    ``users`` (user_id, user_idx) and ``items`` (item_id, item_idx); all persisted."""

    interactions: DataFrame
    users: DataFrame
    items: DataFrame

    def unpersist(self) -> None:
        for frame in (self.interactions, self.users, self.items):
            frame.unpersist()


def validated_interactions(ctx: JobContext, metrics: dict[str, float]) -> tuple[Feedback, DataFrame, dict[str, int]]:
    """Read the configured source, quarantine what breaks the rules, combine the parts into one
    interaction per (user_id, item_id). Returns (feedback, interactions, rows per source);
    EmptyInputError (previous outputs kept) when no valid interaction is left."""
    config = ctx.config
    feedback = read_feedback(ctx)
    quarantined = quarantine_rejected(ctx.lakehouse, feedback.rejected, ctx.job, ctx.run.run_id)
    metrics.update({f"quarantined.{k}": v for k, v in quarantined.items()})
    interactions, from_source = combine_parts(feedback.parts)
    metrics.update({f"interactions_from_{name}": n for name, n in from_source.items()})
    if feedback.guest_order_lines is not None:
        metrics["guest_order_lines_skipped"] = feedback.guest_order_lines
    metrics["interactions"] = rows = interactions.count()
    if rows == 0:
        guests = ("" if feedback.guest_order_lines is None
                  else f"; guest order lines skipped: {feedback.guest_order_lines:,}")
        hint = _orders_hint(ctx.lakehouse, config.source) if config.source == "events" else ""
        raise EmptyInputError(f"als: no valid interaction in source {config.source!r} "
                              f"(quarantined: {quarantined or 'none'}{guests}){hint}; previous outputs kept")
    return feedback, interactions, from_source


def index_ids(interactions: DataFrame, test: DataFrame | None, metrics: dict[str, float]) -> Indexed:
    """Dense user and item numbers over the interactions and a fixed test set (if any)."""
    every = interactions if test is None else interactions.unionByName(test)
    users = build_index(every, "user_id", "user_idx").persist(StorageLevel.MEMORY_AND_DISK)
    items = build_index(every, "item_id", "item_idx").persist(StorageLevel.MEMORY_AND_DISK)
    indexed = to_indices(interactions, users, items).persist(StorageLevel.MEMORY_AND_DISK)
    metrics.update({"users": users.count(), "items": items.count()})
    return Indexed(indexed, users, items)


@dataclass
class Evaluated:
    """The chosen grid point (with every recommender's validation metrics), its models fitted on
    the training rows, and the test metrics of each recommender (name in RECOMMENDERS → metrics)
    on the same test rows."""

    selection: Selection
    models: Models
    test: dict[str, dict[str, float]]


def tune_and_compare(ctx: JobContext, ids: Indexed, test: DataFrame | None, metrics: dict[str, float]) -> Evaluated:
    """Split off the test rows (or take the fixed test set), choose the grid point and the served
    recommender on validation (:func:`select_params`), fit the point on all training rows and score
    ALS, item-based CF and popularity once on test. Adds to ``metrics``: validation_* (ALS),
    validation_item_cf_*, validation_popularity_*, test_* (ALS), item_cf_*, popularity_*, the NDCG
    lift and ``served_popularity`` (1: no model beat popularity on validation)."""
    config = ctx.config
    train, held_out = (ids.interactions, to_indices(test, ids.users, ids.items)) if test is not None \
        else split(ids.interactions, config)
    selection = select_params(config, train, ctx.run)
    data = evaluation_set(train, held_out, config)
    models = fit(data.train, config, selection.params)
    tested = {"als": evaluate(models, data, config), "item_cf": evaluate_item_cf(data, config),
              "popularity": evaluate_popularity(data, config)}
    data.unpersist()
    for stage, scores in (("validation", selection.validation), ("test", tested)):
        for name, values in scores.items():
            metrics.update({f"{metric_prefix(stage, name)}_{k}": v for k, v in values.items() if v is not None})
    if tested["popularity"].get("ndcg_at_k"):
        metrics["ndcg_lift_vs_popularity"] = tested["als"]["ndcg_at_k"] / tested["popularity"]["ndcg_at_k"] - 1.0
    metrics["served_popularity"] = float(selection.served == "popularity")
    ctx.run.log_params({f"als.best.{k}": v for k, v in asdict(selection.params).items()}
                       | {"als.trials": len(selection.trials), "als.served": selection.served})
    return Evaluated(selection, models, tested)


def metric_prefix(stage: str, recommender: str) -> str:
    """MLflow metric prefix: ALS's are ``validation`` / ``test``; the others' ``validation_<name>``
    / ``<name>`` (e.g. validation_item_cf_ndcg_at_k, popularity_ndcg_at_k)."""
    if recommender == "als":
        return stage
    return f"validation_{recommender}" if stage == "validation" else recommender


def served_line(selection: Selection) -> str:
    """What gold.user_recommendations serves and why, with the validation figures that decided."""
    metric = selection.guard_metric
    values = {name: selection.validation[name].get(metric) for name in RECOMMENDERS}
    figures = ", ".join(f"{name} {'n/a' if v is None else f'{v:.4f}'}" for name, v in values.items())
    if selection.served == "popularity":
        return f"  served: popularity to every user, no model beat it (validation {metric}: {figures})"
    return f"  served: {selection.served} (validation {metric}: {figures})"


def run(ctx: JobContext) -> JobSummary:
    """``als.serving``: :func:`retrain` or :func:`fold_in_new_customers`."""
    return fold_in_new_customers(ctx) if ctx.config.serving == "fold_in" else retrain(ctx)


def retrain(ctx: JobContext) -> JobSummary:
    """Train, evaluate and write recommendations (see module docstring)."""
    config = ctx.config
    metrics: dict[str, float] = {}
    with ctx.step("read + validate feedback") as step:
        feedback, interactions, from_source = validated_interactions(ctx, metrics)
        step.update(interactions=int(metrics["interactions"]), **{f"from_{n}": c for n, c in from_source.items()})
    with ctx.step("index ids") as step:
        ids = index_ids(interactions, feedback.test, metrics)
        step.update(users=int(metrics["users"]), items=int(metrics["items"]))
    with ctx.step("split + tune") as step:
        evaluated = tune_and_compare(ctx, ids, feedback.test, metrics)
        best, selection = evaluated.selection.params, evaluated.selection
        metric = evaluated.test["als"].get(config.selection_metric)
        step.update(trials=len(selection.trials), chosen=best, served=selection.served,
                    **{f"test_{config.selection_metric}": round(metric, 4) if metric is not None else None})
    with ctx.step("final model") as step:
        models = fit(ids.interactions, config, best) if config.refit_full else evaluated.models
        step.update(refit=config.refit_full)
    with ctx.step("top-N + similar items") as step:
        outputs = build_outputs(ctx, models.ranking, ids.interactions, ids.users, ids.items, feedback.known_users,
                                feedback.purchased, served=selection.served)
        served_users = max(outputs.counts["recommended_users"], 1)
        metrics["fallback_share"] = outputs.counts["fallback_users"] / served_users
        metrics["topped_up_share"] = outputs.counts["topped_up_users"] / served_users
        step.update(**outputs.counts)
    with ctx.step("write gold") as step:
        write_outputs(ctx, outputs, model_state_table(models.ranking.itemFactors, ids.items, best.reg_param,
                                                      best.alpha, selection.served))
        model_uri, version = log_model(ctx, models.logged, ids.interactions)
        step.update(model=model_uri, version=version)
    table = metric_table(evaluated.test)
    ctx.run.log_metrics(metrics)
    ctx.run.log_table(table, "metrics_vs_popularity")
    lines = [f"  mode={config.mode} source={config.source} split={config.split if feedback.test is None else 'fixed'} "
             f"chosen={best} model={model_uri} version={version}",
             source_line(int(metrics["interactions"]), from_source, feedback.guest_order_lines),
             served_line(selection),
             *("  " + line for line in table.to_string(index=False, float_format="{:.4f}".format).splitlines()),
             *sample_lines(outputs.recommendations, ids.interactions)]
    for frame in (outputs.recommendations, outputs.similar, interactions):
        frame.unpersist()
    ids.unpersist()
    return summarize(ctx, outputs, metrics, lines)


def summarize(ctx: JobContext, outputs: Outputs, metrics: dict[str, float], lines: list[str]) -> JobSummary:
    """Rows per gold table, the headline metrics and ``lines``."""
    shown = ("test_ndcg_at_k", "item_cf_ndcg_at_k", "popularity_ndcg_at_k", "test_rating_model_ndcg_at_k", "test_rmse",
             "popularity_rmse", "fallback_share", "served_popularity")
    return JobSummary(job=ctx.job, run_id=ctx.run.run_id,
                      tables={str(USER_RECOMMENDATIONS): outputs.counts["recommendation_rows"],
                              str(SIMILAR_ITEMS): outputs.counts["similar_rows"],
                              str(USER_INDEX): int(metrics["users"]), str(ITEM_INDEX): int(metrics["items"])},
                      metrics={k: float(metrics[k]) for k in shown if k in metrics},
                      lines=lines)


def fold_in_new_customers(ctx: JobContext) -> JobSummary:
    """``als.serving=fold_in``: lists for the customers the last retrain's lists do not cover, from
    its model (:mod:`~shopai_spark.recommend.serving`); NothingChanged when there are none."""
    metrics: dict[str, float] = {}
    with ctx.step("read + validate feedback") as step:
        feedback, interactions, from_source = validated_interactions(ctx, metrics)
        step.update(interactions=int(metrics["interactions"]))
    with ctx.step("read the model") as step:
        state = read_model_state(ctx.lakehouse, USER_INDEX, ITEM_INDEX, USER_RECOMMENDATIONS)
        ctx.run.log_params({"als.fold_in.model_run_id": state.model_run_id})
        step.update(model_run=state.model_run_id, items=len(state.factors.ids))
    with ctx.step("fold in new customers") as step:
        served, recs, new_users = folded_in_lists(ctx, state, feedback, interactions, metrics)
        step.update(**{k: int(v) for k, v in metrics.items() if k.startswith("fold_in_")})
    with ctx.step("write gold") as step:
        kept_recs = stored_rows(state, USER_RECOMMENDATIONS).join(served, "user_id", "left_anti")
        ctx.lakehouse.overwrite_all([
            TableWrite(stored_rows(state, USER_INDEX).unionByName(with_run_metadata(new_users, ctx.run.run_id)),
                       USER_INDEX),
            TableWrite(kept_recs.unionByName(with_run_metadata(recs, ctx.run.run_id)), USER_RECOMMENDATIONS)])
        step.update(rows_added=int(metrics["recommendation_rows"]))
    ctx.run.log_metrics(metrics)
    lines = [f"  serving=fold_in model of run {state.model_run_id}: {int(metrics['fold_in_users']):,} customers "
             f"folded in, {int(metrics['fold_in_fallback_users']):,} given the popularity fallback, "
             f"{int(metrics['recommendation_rows']):,} rows added",
             source_line(int(metrics["interactions"]), from_source, feedback.guest_order_lines),
             *sample_lines(recs, interactions.join(new_users, "user_id", "left_semi"))]
    for frame in (served, recs, new_users, interactions):
        frame.unpersist()
    return JobSummary(job=ctx.job, run_id=ctx.run.run_id,
                      tables={str(ref): ctx.lakehouse.read(ref).count() for ref in (USER_RECOMMENDATIONS, USER_INDEX)},
                      metrics={k: float(metrics[k]) for k in ("fold_in_users", "fold_in_fallback_users")},
                      lines=lines)


def folded_in_lists(ctx: JobContext, state: ModelState, feedback: Feedback, interactions: DataFrame,
                    metrics: dict[str, float]) -> tuple[DataFrame, DataFrame, DataFrame]:
    """The customers to serve (user_id, warm), their lists (user_id, rank, sku, score, is_fallback,
    folded_in) and the warm ones' new index rows (user_id, user_idx), all persisted. Adds to
    ``metrics`` fold_in_users, fold_in_fallback_users, fold_in_skipped_interactions (on items the
    model does not know) and the list counts. NothingChanged when no customer is to be served."""
    config = ctx.config
    served = customers_to_serve(feedback.known_users, ranking_feedback(interactions, config, ("user_id", "item_id")),
                                state).persist(StorageLevel.MEMORY_AND_DISK)
    row = served.agg(F.count(F.lit(1)).alias("users"), F.count(F.when(F.col("warm"), 1)).alias("warm")).first()
    if row["users"] == 0:
        served.unpersist()
        raise NothingChanged(state.model_run_id, f"no customer arrived since the lists of run {state.model_run_id}: "
                                                 "nothing written")
    new_users = numbered_users(served, state).persist(StorageLevel.MEMORY_AND_DISK)
    theirs = interactions.join(served, "user_id", "left_semi")
    indexed = to_indices(theirs, new_users, state.items)
    factors = fold_in(ranking_feedback(indexed, config), state.factors, state.reg_param, state.alpha)
    purchased = None if config.exclude == "none" or feedback.purchased is None else feedback.purchased
    excluded = excluded_items(indexed, config.exclude,
                              None if purchased is None else to_indices(purchased, new_users, state.items))
    warm = to_ids(recommend_all(factors, state.factors, config.top_n, excluded, config.block_size), new_users,
                  state.items, item_id_col="sku").persist(StorageLevel.MEMORY_AND_DISK)
    everyone = to_indices(interactions, state.users.unionByName(new_users), state.items)
    bought = excluded_items(theirs, config.exclude, purchased, ("user_id", "item_id"))
    recs = topped_up(ctx, warm, served.select("user_id"), fb.training_feedback(everyone, config.mode), state.items,
                     bought).join(served.select("user_id", F.col("warm").alias("folded_in")), "user_id") \
        .persist(StorageLevel.MEMORY_AND_DISK)
    metrics.update(list_counts(recs))
    warm.unpersist()
    metrics.update({"fold_in_users": int(row["warm"]), "fold_in_fallback_users": int(row["users"] - row["warm"]),
                    "fold_in_skipped_interactions": theirs.join(state.items, "item_id", "left_anti").count()})
    return served, recs, new_users


def stored_rows(state: ModelState, ref: TableRef) -> DataFrame:
    """``ref`` as the fold-in read it, with ``folded_in`` = false added to lists written before the
    column existed."""
    frame = state.read(ref)
    if ref == USER_RECOMMENDATIONS and "folded_in" not in frame.columns:
        frame = frame.withColumn("folded_in", F.lit(False))
    return frame
