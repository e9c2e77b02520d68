"""Fold-in serving: lists for the customers who arrived since the last retrain, without refitting.

A retrain (``als.serving=retrain``) stores the ranking model's item factors and the parameters its
user factors were solved with in gold.als_item_factors (:func:`model_state_table`).
``als.serving=fold_in`` reads them back (:func:`read_model_state`) and serves only the customers
the stored lists do not cover (:func:`customers_to_serve`):

- *new*: known customers without a row in gold.user_recommendations (they arrived after it);
- *warmed up*: customers with feedback on the model's items now but not in gold.als_user_index (cold
  at the retrain: they got the popularity fallback then).

Those with feedback on the model's items are folded in (:func:`~shopai_spark.recommend.foldin.fold_in`,
MLlib's own solve for a user given the item factors) and ranked like everyone else; their rows carry
``folded_in = true`` and they join gold.als_user_index with new numbers. The others get the popularity
fallback. Every other row of gold.user_recommendations stays as the retrain (or an earlier fold-in)
wrote it, run_id and generated_at included. Interactions on items the model does not know are left
out (counted): only a retrain learns new items.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.errors import MissingTableError
from shopai_spark.recommend.indexing import build_index
from shopai_spark.recommend.topn import ItemFactors, collect_item_factors
from shopai_spark.tables import Lakehouse, TableRef

ITEM_FACTORS = TableRef("gold", "als_item_factors")


class ModelNotServedError(MissingTableError):
    """The last retrain did not serve ALS lists: there is no model to fold customers into."""


def model_state_table(item_factors: DataFrame, items: DataFrame, reg_param: float, alpha: float,
                      served: str) -> DataFrame:
    """An ALS model's ``itemFactors`` (id, features) and the item index (item_id, item_idx) → sku,
    item_idx, features, reg_param, alpha (of the ranking model), served (the recommender the run
    served): the rows of gold.als_item_factors."""
    return (item_factors.select(F.col("id").alias("item_idx"), "features")
            .join(items.select(F.col("item_id").alias("sku"), "item_idx"), "item_idx")
            .select("sku", "item_idx", "features", F.lit(float(reg_param)).alias("reg_param"),
                    F.lit(float(alpha)).alias("alpha"), F.lit(served).alias("served")))


@dataclass
class ModelState:
    """What the last retrain left to fold customers into: its item factors (on the driver), the
    parameters of the solve, its id maps (users: user_id, user_idx; items: item_id, item_idx), its
    lists (gold.user_recommendations), the MLflow run that wrote the factors and the table versions
    all of these were read at (:meth:`read`).

    The frames read pinned versions: the fold-in overwrites the lists and the user index it read,
    and a write makes Spark recompute the cached frames over the written table, which at its latest
    version would already hold the new customers."""

    factors: ItemFactors
    reg_param: float
    alpha: float
    users: DataFrame
    items: DataFrame
    recommendations: DataFrame
    model_run_id: str
    lake: Lakehouse
    versions: dict[TableRef, int]

    def read(self, ref: TableRef) -> DataFrame:
        """``ref`` (one of the tables of the state) at the version the state was read at."""
        return self.lake.read(ref, self.versions[ref])


def read_model_state(lake: Lakehouse, user_index: TableRef, item_index: TableRef,
                     recommendations: TableRef) -> ModelState:
    """The committed state of the last retrain. MissingTableError when a table is missing (no retrain
    has run); ModelNotServedError when that retrain served popularity or item-based CF."""
    missing = [str(ref) for ref in (ITEM_FACTORS, user_index, item_index, recommendations) if not lake.exists(ref)]
    if missing:
        raise MissingTableError(f"als: als.serving=fold_in needs the model of a retrain and {', '.join(missing)} "
                                "is not there: run jobs/als.py with als.serving=retrain first")
    versions = {ref: lake.version(ref) for ref in (ITEM_FACTORS, user_index, item_index, recommendations)}
    stored = lake.read(ITEM_FACTORS, versions[ITEM_FACTORS])
    head = stored.select("reg_param", "alpha", "served", "run_id").first()
    if head is None:
        raise MissingTableError(f"als: {ITEM_FACTORS} is empty: run jobs/als.py with als.serving=retrain first")
    if head["served"] != "als":
        raise ModelNotServedError(f"als: the last retrain (run {head['run_id']}) served {head['served']}, not ALS "
                                  "lists: there is no model to fold new customers into; run jobs/als.py with "
                                  "als.serving=retrain")
    def pinned(ref: TableRef) -> DataFrame:
        return lake.read(ref, versions[ref])

    return ModelState(factors=collect_item_factors(stored, "item_idx", "features"), reg_param=head["reg_param"],
                      alpha=head["alpha"], users=pinned(user_index).select("user_id", "user_idx"),
                      items=pinned(item_index).select(F.col("sku").alias("item_id"), "item_idx"),
                      recommendations=pinned(recommendations), model_run_id=head["run_id"], lake=lake,
                      versions=versions)


def customers_to_serve(known_users: DataFrame, feedback: DataFrame, state: ModelState) -> DataFrame:
    """Known users (user_id) and the ranking feedback now (user_id, item_id: the interactions of
    weight > 0, :func:`~shopai_spark.recommend.train.ranking_feedback`) → user_id, warm (true:
    feedback on an item of the model) of the users the stored lists do not cover:
    new (no row in the stored lists) or warmed up (warm and not in the stored user index)."""
    warm = (feedback.join(state.items, "item_id", "left_semi")
            .select("user_id").distinct().withColumn("warm", F.lit(True)))
    listed = state.recommendations.select("user_id").distinct()
    new = known_users.select("user_id").distinct().join(listed, "user_id", "left_anti")
    warmed_up = warm.join(state.users, "user_id", "left_anti").select("user_id")
    return (new.unionByName(warmed_up).distinct().join(warm, "user_id", "left")
            .select("user_id", F.coalesce("warm", F.lit(False)).alias("warm")))


def numbered_users(served: DataFrame, state: ModelState) -> DataFrame:
    """The warm users of :func:`customers_to_serve` → user_id, user_idx: numbers after the stored
    index's largest (dense, as :func:`~shopai_spark.recommend.indexing.build_index` numbers them)."""
    start = state.users.agg(F.max("user_idx")).first()[0]
    offset = 0 if start is None else start + 1
    fresh = build_index(served.where("warm"), "user_id", "user_idx")
    return fresh.select("user_id", (F.col("user_idx") + F.lit(offset)).cast("int").alias("user_idx"))
