"""One harness for every recommender (``jobs/evaluate_recommenders.py``): popularity, item-based CF,
association rules and ALS scored on the same held-out interactions, users, candidates and exclusions.

Held out (see docs/recommend.md, "Comparing the recommenders"):

* shop sources (``als.source`` events, orders, events+orders): the last basket (order) of every
  customer with at least two usable baskets (:func:`~shopai_spark.basket.baskets.last_basket_split`,
  baskets as the association-rules job builds them). Training is everything before it: that
  customer's order lines and returns before the basket, and events up to
  ``evaluate.session_minutes`` before it (the visit that led to the basket is not training); other
  customers' rows all. Rules are mined on the training baskets.
* ratings sources (``udata``, ``ratings_table``): the ``als.test_path`` file, else ``als.split``;
  relevant = rating >= ``als.relevant_min_rating``; each user's training items are one basket.

Every recommender is then judged as the recommendations job judges ALS (:class:`EvalSet`): the
evaluated users are those with a relevant held-out item and training feedback, the candidates the
training catalogue, and every training (user, item) is excluded; a held-out item the user already
had in training cannot be recommended, so it is not counted as relevant either. ALS runs at the
configured point (a grid, if any, is chosen on a validation split of the training rows, never on the
held-out rows). The job writes no table: metrics ``<recommender>_<metric>``, the comparison table and
a bar chart go to its MLflow run.

The only module that composes two domains (recommend and basket), hence part of the application
layer (``tests/test_import_layers.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.basket.baskets import last_basket_split, order_baskets, usable
from shopai_spark.basket.config import FpGrowthConfig
from shopai_spark.basket.job import mine
from shopai_spark.basket.recommend_rules import rule_recommendations
from shopai_spark.config import setting
from shopai_spark.errors import EmptyInputError, JobError, MissingTableError
from shopai_spark.lineage import cut_lineage
from shopai_spark.recommend.config import AlsConfig
from shopai_spark.recommend.indexing import to_ids, to_indices
from shopai_spark.recommend.interactions import INTERACTION_COLUMNS, training_feedback
from shopai_spark.recommend.job import (
    SHOP_SOURCES,
    Indexed,
    ShopTables,
    combine_parts,
    index_ids,
    read_feedback,
    read_shop_tables,
    shop_feedback,
)
from shopai_spark.recommend.metrics import ranking_metrics
from shopai_spark.recommend.split import before_cutoffs, split
from shopai_spark.recommend.train import (
    EvalSet,
    evaluate,
    evaluate_item_cf,
    evaluate_popularity,
    evaluation_set,
    fit,
    param_grid,
    select_params,
)
from shopai_spark.runtime import JobContext, JobSummary
from shopai_spark.schemas import ORDER_ITEMS

log = logging.getLogger(__name__)

RECOMMENDERS = ("popularity", "item_cf", "rules", "als")   # simplest first
TABLE_METRICS = ("ndcg_at_k", "precision_at_k", "recall_at_k", "map_at_k", "hit_rate", "coverage", "served_share",
                 "users_evaluated")
CHART_METRICS = TABLE_METRICS[:-1]
PERSISTED = StorageLevel.MEMORY_AND_DISK


@dataclass(frozen=True)
class EvaluateConfig:
    """The recommender comparison's own settings (``jobs/evaluate_recommenders.py``); the
    recommenders themselves are configured by the ``als`` and ``fpgrowth`` sections."""

    session_minutes: float = setting(
        60.0, doc="shop sources: a customer's events less than this many minutes before their held-out basket "
                  "(the visit that led to it: views, cart-adds) are left out of training (>= 0)")

    def __post_init__(self) -> None:
        if not self.session_minutes >= 0:
            raise ValueError(f"evaluate.session_minutes must be >= 0, got {self.session_minutes}")


@dataclass(frozen=True)
class HarnessSettings:
    """What the harness job receives: its ``evaluate`` section and, unchanged, the ``als`` and
    ``fpgrowth`` sections of the recommenders it compares (MLflow params ``harness.<section>.<key>``)."""

    evaluate: EvaluateConfig
    als: AlsConfig
    fpgrowth: FpGrowthConfig


@dataclass
class HeldOut:
    """A hold-out ready for every recommender, in ids: ``train`` and ``test`` interactions
    (INTERACTION_COLUMNS), the training ``baskets`` rules are mined on (order_id, items, size), each
    user's basket items rules match (``history``: user_id, item) and the counts that describe it.
    ``test`` is computed with its lineage cut (:func:`~shopai_spark.lineage.cut_lineage`);
    ``history`` and the frames it was cut from (``sources``: the interactions, the held-out
    baskets) are persisted; :meth:`unpersist` releases them all."""

    train: DataFrame
    test: DataFrame
    baskets: DataFrame
    history: DataFrame
    counts: dict[str, int]
    sources: tuple[DataFrame, ...] = ()

    def unpersist(self) -> None:
        for frame in (self.test, self.history, *self.sources):
            frame.unpersist()


def visit_cutoffs(held_out: DataFrame, minutes: float) -> tuple[DataFrame, DataFrame]:
    """Held-out baskets (user_id, order_ts, ...) → (user_id, cutoff_ts = the basket's time;
    user_id, cutoff_ts = ``minutes`` earlier, where the visit that led to it starts)."""
    cut = held_out.select("user_id", F.col("order_ts").alias("cutoff_ts"))
    visit = cut.withColumn("cutoff_ts", F.col("cutoff_ts") - F.make_dt_interval(secs=F.lit(minutes * 60.0)))
    return cut, visit


def shop_before(shop: ShopTables, held_out: DataFrame, minutes: float) -> ShopTables:
    """The shop tables without what a held-out customer did from their held-out basket on: orders,
    lines and returns from its time, events from ``minutes`` before it."""
    cut, visit = visit_cutoffs(held_out, minutes)

    def keep(frame: DataFrame | None, cutoffs: DataFrame, ts_col: str) -> DataFrame | None:
        return None if frame is None else before_cutoffs(frame, cutoffs, ts_col)

    return dataclasses.replace(shop, events=keep(shop.events, visit, "event_ts"), orders=keep(shop.orders, cut, "order_ts"),
                               lines=keep(shop.lines, cut, "order_ts"), returns=keep(shop.returns, cut, "return_ts"))


def basket_items(baskets: DataFrame) -> DataFrame:
    """Baskets (user_id, order_id, order_ts, items) → INTERACTION_COLUMNS, one row per basket item
    (rating 1, relevant)."""
    return baskets.select("user_id", F.explode("items").alias("item_id"), F.lit(1.0).alias("rating"),
                          F.col("order_ts").alias("ts"), F.lit(True).alias("consumed"), F.lit(True).alias("relevant"))


def shop_hold_out(ctx: JobContext) -> HeldOut:
    """Shop sources: each customer's last basket held out, training before it (module docstring)."""
    settings = ctx.config
    shop = read_shop_tables(dataclasses.replace(ctx, config=settings.als))
    if shop.lines is None:
        raise MissingTableError("evaluate_recommenders holds out each customer's last basket: it needs "
                                f"{ORDER_ITEMS.ref} and silver.orders; ingest an order export first")
    baskets = cut_lineage(usable(order_baskets(ctx.read(ORDER_ITEMS.ref), shop.orders, settings.fpgrowth)))
    train_baskets, held_out = last_basket_split(baskets, shop.orders)
    held_out = held_out.persist(PERSISTED)
    feedback = shop_feedback(settings.als, shop_before(shop, held_out, settings.evaluate.session_minutes))
    train, _ = combine_parts(feedback.parts)
    history = train_baskets.where(F.col("user_id").isNotNull()).select("user_id", F.explode("items").alias("item"))
    return HeldOut(train, basket_items(held_out), train_baskets.select("order_id", "items", "size"), history,
                   {"held_out_baskets": held_out.count()}, sources=(train, held_out))


def ratings_hold_out(ctx: JobContext) -> HeldOut:
    """Ratings sources: the test file (or ``als.split``) held out; each user's training items are
    one basket, kept for mining within the ``fpgrowth`` basket sizes."""
    als, fpgrowth = ctx.config.als, ctx.config.fpgrowth
    feedback = read_feedback(dataclasses.replace(ctx, config=als))
    interactions, _ = combine_parts(feedback.parts)
    train, test = (interactions, feedback.test) if feedback.test is not None else split(interactions, als)
    history = training_feedback(train, als.mode).select("user_id", F.col("item_id").alias("item"))
    baskets = history.groupBy(F.col("user_id").alias("order_id")).agg(F.array_sort(F.collect_set("item")).alias("items")) \
        .withColumn("size", F.size("items")).where(F.col("size").between(fpgrowth.min_basket_size, fpgrowth.max_basket_size))
    return HeldOut(train, test, baskets, history, {}, sources=(interactions,))


def hold_out(ctx: JobContext) -> HeldOut:
    """The hold-out of the configured source; held-out items the user had in training are dropped
    (they are excluded from every list, so no recommender could hit them)."""
    settings = ctx.config
    if settings.fpgrowth.level != "sku":
        raise JobError("evaluate_recommenders compares item recommendations: it needs fpgrowth.level=sku")
    held = (shop_hold_out if settings.als.source in SHOP_SOURCES else ratings_hold_out)(ctx)
    held.test = cut_lineage(held.test.select(*INTERACTION_COLUMNS).join(held.train.select("user_id", "item_id"),
                                                                       ["user_id", "item_id"], "left_anti"))
    held.history = held.history.persist(PERSISTED)
    held.counts["train_interactions"] = held.train.count()
    if held.counts["train_interactions"] == 0:
        raise EmptyInputError(f"evaluate_recommenders: no training interaction in source {settings.als.source!r}")
    return held


def rules_scores(ctx: JobContext, held: HeldOut, ids: Indexed, data: EvalSet) -> dict[str, float]:
    """Mine the training baskets (``fpgrowth`` settings; the guard may stop a search too large)
    and score the rules' lists on ``data``: candidates the training catalogue, the same exclusions.
    Adds the number of ``rules`` and ``training_baskets`` to ``held.counts``."""
    als = ctx.config.als
    baskets = held.baskets.persist(PERSISTED)
    row = baskets.agg(F.count(F.lit(1)).alias("n"), F.max("size").alias("largest")).first()
    if row["n"] == 0:
        raise EmptyInputError("evaluate_recommenders: no training basket to mine rules on (fpgrowth basket sizes?)")
    mined = mine(baskets, row["n"], row["largest"], ctx.config.fpgrowth)
    catalog = to_ids(data.train.select("item_idx").distinct(), items=ids.items)
    rules = mined.rules.join(catalog.select(F.array("item_id").alias("consequent")), "consequent")
    users = to_ids(data.truth.select("user_idx").distinct(), users=ids.users)
    exclude = held.train.select("user_id", F.col("item_id").alias("item"))
    recs = rule_recommendations(held.history.join(users, "user_id"), rules, als.k, exclude)
    scores = ranking_metrics(to_indices(recs.withColumnRenamed("item", "item_id"), ids.users, ids.items), data.truth,
                             als.k, data.catalog_size)
    held.counts.update(rules=sum(mined.rules_by_length.values()), training_baskets=row["n"])
    mined.unpersist()
    baskets.unpersist()
    return scores


def als_scores(ctx: JobContext, ids: Indexed, data: EvalSet) -> dict[str, float]:
    """ALS at the configured point, or at the grid point chosen on a validation split carved out of
    the training rows (never the held-out ones), fitted on the training rows and scored on ``data``."""
    als = ctx.config.als
    grid = param_grid(als)
    params = grid[0] if len(grid) == 1 else select_params(als, ids.interactions, ctx.run).params
    ctx.run.log_params({f"als.best.{k}": v for k, v in dataclasses.asdict(params).items()})
    return evaluate(fit(data.train, als, params), data, als)


def comparison_table(scores: dict[str, dict[str, float]]) -> pd.DataFrame:
    """recommender | TABLE_METRICS, one row per recommender of RECOMMENDERS found in ``scores``."""
    return pd.DataFrame([{"recommender": name, **{m: scores[name].get(m) for m in TABLE_METRICS}}
                         for name in RECOMMENDERS if name in scores])


def comparison_chart(table: pd.DataFrame, k: int) -> Figure:
    """Grouped bars: CHART_METRICS on the x axis, one bar per recommender (matplotlib object API)."""
    figure = Figure(figsize=(9, 4.5))
    axes = figure.subplots()
    width = 0.8 / len(table)
    for offset, row in enumerate(table.itertuples(index=False)):
        axes.bar([i + offset * width for i in range(len(CHART_METRICS))],
                 [getattr(row, m) or 0.0 for m in CHART_METRICS], width, label=row.recommender)
    axes.set_xticks([i + width * (len(table) - 1) / 2 for i in range(len(CHART_METRICS))],
                    [m.replace("_at_k", f"@{k}") for m in CHART_METRICS])
    axes.set_ylabel("share")
    axes.set_title(f"Recommenders on the same held-out interactions ({int(table['users_evaluated'].max()):,} users)")
    axes.legend()
    figure.tight_layout()
    return figure


def run(ctx: JobContext[HarnessSettings]) -> JobSummary:
    """Score the four recommenders on one hold-out (module docstring); log the comparison."""
    als = ctx.config.als
    metrics: dict[str, float] = {}
    with ctx.step("hold out") as step:
        held = hold_out(ctx)
        step.update(**held.counts)
    with ctx.step("index ids") as step:
        ids = index_ids(held.train, held.test, metrics)
        data = evaluation_set(ids.interactions, to_indices(held.test, ids.users, ids.items), als)
        step.update(users=int(metrics["users"]), items=int(metrics["items"]))
    with ctx.step("popularity + item-based CF") as step:
        scores = {"popularity": evaluate_popularity(data, als), "item_cf": evaluate_item_cf(data, als)}
        step.update(users_evaluated=int(scores["popularity"]["users_evaluated"]))
    with ctx.step("FP-Growth rules") as step:
        scores["rules"] = rules_scores(ctx, held, ids, data)
        step.update(rules=held.counts["rules"], served_share=round(scores["rules"]["served_share"], 3))
    with ctx.step("ALS") as step:
        scores["als"] = als_scores(ctx, ids, data)
        step.update(ndcg_at_k=round(scores["als"]["ndcg_at_k"], 4))
    data.unpersist()
    held.unpersist()
    ids.unpersist()
    return log_comparison(ctx, scores, metrics | held.counts)


def log_comparison(ctx: JobContext[HarnessSettings], scores: dict[str, dict[str, float]],
                   counts: dict[str, float]) -> JobSummary:
    """Metrics ``<recommender>_<metric>``, the table (CSV) and the chart (PNG) to MLflow; the summary
    shows NDCG and served share per recommender and the table."""
    table = comparison_table(scores)
    ctx.run.log_metrics(counts | {f"{name}_{m}": v for name, values in scores.items() for m, v in values.items()})
    ctx.run.log_table(table, "recommender_comparison")
    ctx.run.log_figure(comparison_chart(table, ctx.config.als.k), "recommender_comparison")
    source = ctx.config.als.source
    rule = "the last basket of each customer" if source in SHOP_SOURCES else "the test file / split"
    lines = [f"  source={source}, held out: {rule}; k={ctx.config.als.k}",
             *("  " + line for line in table.to_string(index=False, float_format="{:.4f}".format).splitlines())]
    shown = {f"{name}_{m}": scores[name][m] for name in RECOMMENDERS for m in ("ndcg_at_k", "served_share")}
    return JobSummary(job=ctx.job, run_id=ctx.run.run_id, metrics=shown, lines=lines)
