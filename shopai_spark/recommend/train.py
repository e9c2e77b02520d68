"""ALS fitting, evaluation against the popularity baseline, and grid selection on validation.

The grid is chosen on a validation split carved out of the training rows (:func:`select_params`,
each trial an MLflow child run); the test rows are scored once, by the chosen parameters refitted
on all training rows, so the reported test figure is never a maximum over trials.

Frames here use dense ids (user_idx, item_idx, rating, ...; see indexing.py). ALS runs with
``checkpointInterval`` so long runs truncate their lineage in the checkpoint directory that
:func:`shopai_spark.session.get_spark` sets from ``spark.checkpoint_dir``.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shopai_spark.recommend.baseline import item_mean_predictions, popularity_recommend
from shopai_spark.recommend.config import AlsConfig
from shopai_spark.recommend.interactions import implicit_weight, training_feedback
from shopai_spark.recommend.itemcf import item_cf_recommend, item_neighbours
from shopai_spark.recommend.metrics import error_metrics, ranking_metrics
from shopai_spark.recommend.split import validation_split
from shopai_spark.recommend.topn import collect_item_factors, recommend_all
from shopai_spark.tracking import JobRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    """One point of the ALS grid."""

    rank: int
    reg_param: float
    alpha: float
    max_iter: int


def param_grid(config: AlsConfig) -> list[Params]:
    """Every combination of ``config.grid`` values (keys absent from the grid: the single config value)."""
    values = {name: config.grid.get(name, [getattr(config, name)]) for name in ("rank", "reg_param", "alpha",
                                                                               "max_iter")}
    return [Params(int(r), float(g), float(a), int(i))
            for r, g, a, i in itertools.product(values["rank"], values["reg_param"], values["alpha"],
                                                values["max_iter"])]


def build_als(config: AlsConfig, params: Params, implicit: bool) -> ALS:
    """The MLlib estimator for ``params`` (users/items without factors are dropped when scoring)."""
    return ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", implicitPrefs=implicit,
               rank=params.rank, regParam=params.reg_param, alpha=params.alpha, maxIter=params.max_iter,
               seed=config.seed, checkpointInterval=config.checkpoint_interval, numUserBlocks=config.num_blocks,
               numItemBlocks=config.num_blocks, coldStartStrategy="drop")


@dataclass
class Models:
    """The models of one grid point. ``ranking`` (implicit ALS) orders every recommendation list;
    in explicit mode it is fitted on the same ratings taken as implicit feedback
    (:func:`~shopai_spark.recommend.interactions.implicit_weight`), because a rating model's top-N
    favours items rated once or twice. ``rating`` (explicit mode only, else None) predicts ratings:
    RMSE/MAE and the logged model."""

    ranking: ALSModel
    rating: ALSModel | None = None

    @property
    def logged(self) -> ALSModel:
        """The model logged to MLflow: the rating model in explicit mode, else the ranking model."""
        return self.rating or self.ranking


def ranking_feedback(train: DataFrame, config: AlsConfig, keys: tuple[str, str] = ("user_idx", "item_idx")) -> DataFrame:
    """``keys`` (default user_idx, item_idx), rating: the implicit feedback the ranking model learns
    from (explicit mode: each rating through ``feedback_min_rating`` / ``feedback_weight``)."""
    if config.mode == "explicit":
        train = train.withColumn("rating", implicit_weight(F.col("rating"), config.feedback_min_rating,
                                                           config.feedback_weight))
    return training_feedback(train, "implicit").select(*keys, "rating")


def fit(train: DataFrame, config: AlsConfig, params: Params) -> Models:
    """Fit the models of ``params`` on ``train`` (user_idx, item_idx, rating)."""
    ranking = build_als(config, params, implicit=True).fit(ranking_feedback(train, config))
    if config.mode == "implicit":
        return Models(ranking)
    return Models(ranking, build_als(config, params, implicit=False).fit(train.select("user_idx", "item_idx", "rating")))


@dataclass
class EvalSet:
    """A split ready for evaluation; ALS and the baselines are scored on exactly these rows.

    ``train``: the training feedback (:func:`~shopai_spark.recommend.interactions.training_feedback`).
    ``exclude``: every training (user_idx, item_idx), feedback or not (e.g. a rating below
    ``feedback_min_rating``), never recommended during evaluation. ``truth``: the ``relevant`` test
    (user_idx, item_idx) of users with training feedback. ``scored``: the test rows (user_idx,
    item_idx, rating) whose user and item both have training feedback, the rows every model's
    RMSE/MAE is computed on (explicit mode; ALS predicts nothing for the others).
    ``catalog_size``: distinct training items.
    """

    train: DataFrame
    scored: DataFrame
    truth: DataFrame
    exclude: DataFrame
    catalog_size: int

    def unpersist(self) -> None:
        for frame in (self.train, self.scored, self.truth, self.exclude):
            frame.unpersist()


def evaluation_set(train: DataFrame, test: DataFrame, config: AlsConfig) -> EvalSet:
    """``train`` and ``test`` (user_idx, item_idx, rating, relevant, ...) → the persisted
    :class:`EvalSet`."""
    persisted = StorageLevel.MEMORY_AND_DISK
    exclude = train.select("user_idx", "item_idx").persist(persisted)
    feedback = training_feedback(train, config.mode).select("user_idx", "item_idx", "rating").persist(persisted)
    users, items = feedback.select("user_idx").distinct(), feedback.select("item_idx").distinct()
    truth = test.where("relevant").select("user_idx", "item_idx").distinct().join(users, "user_idx") \
        .persist(persisted)
    scored = test.select("user_idx", "item_idx", "rating").join(users, "user_idx").join(items, "item_idx") \
        .persist(persisted)
    return EvalSet(feedback, scored, truth, exclude, items.count())


def model_ranking_metrics(model: ALSModel, data: EvalSet, config: AlsConfig) -> dict[str, float]:
    """Ranking metrics at ``config.k`` of ``model``'s top-k for the users of ``data.truth``."""
    users = model.userFactors.join(data.truth.select(F.col("user_idx").alias("id")).distinct(), "id")
    recs = recommend_all(users, collect_item_factors(model.itemFactors), config.k, data.exclude, config.block_size)
    return ranking_metrics(recs, data.truth, config.k, data.catalog_size)


def evaluate(models: Models, data: EvalSet, config: AlsConfig) -> dict[str, float]:
    """Ranking metrics of the ranking model, plus in explicit mode the rating model's RMSE/MAE on
    ``data.scored`` and the NDCG of its own top-k (``rating_model_ndcg_at_k``: why it does not rank)."""
    metrics = model_ranking_metrics(models.ranking, data, config)
    if models.rating is not None:
        metrics.update(error_metrics(models.rating.transform(data.scored)))
        metrics["rating_model_ndcg_at_k"] = model_ranking_metrics(models.rating, data, config)["ndcg_at_k"]
    return metrics


def evaluate_item_cf(data: EvalSet, config: AlsConfig) -> dict[str, float]:
    """Ranking metrics at ``config.k`` of item-based CF (:mod:`~shopai_spark.recommend.itemcf`)
    learnt from the ranking model's training feedback, on the same users and candidates."""
    feedback = ranking_feedback(data.train, config)
    neighbours = item_neighbours(feedback, config.item_cf_neighbours, config.item_cf_shrinkage,
                                 config.item_cf_max_user_items)
    recs = item_cf_recommend(data.truth.select("user_idx"), feedback, neighbours, config.k, data.exclude)
    return ranking_metrics(recs, data.truth, config.k, data.catalog_size)


def evaluate_popularity(data: EvalSet, config: AlsConfig) -> dict[str, float]:
    """The same metrics for the popularity baseline on the same users, candidates and rows
    (explicit: item-mean predictions for RMSE/MAE)."""
    users = data.truth.select("user_idx").distinct()
    recs = popularity_recommend(users, data.train, config.k, data.exclude, config.block_size)
    metrics = ranking_metrics(recs, data.truth, config.k, data.catalog_size)
    if config.mode == "explicit":
        metrics.update(error_metrics(item_mean_predictions(data.train, data.scored)))
    return metrics


@dataclass
class Trial:
    """One grid point and its validation metrics (child run ``run_id``)."""

    params: Params
    metrics: dict[str, float]
    run_id: str


def tune(config: AlsConfig, data: EvalSet, run: JobRun) -> list[Trial]:
    """Fit every grid point on ``data.train`` and score it on ``data`` (the validation split), each
    as a child run ``als_trial`` of ``run`` logging ``validation_<metric>``."""
    trials = []
    for number, params in enumerate(param_grid(config), start=1):
        name = f"als_trial_{number}_rank{params.rank}_reg{params.reg_param:g}_alpha{params.alpha:g}_it{params.max_iter}"
        with run.child_run("als_trial", name) as trial_run:
            trial_run.log_params({f"als.{k}": v for k, v in asdict(params).items()})
            metrics = evaluate(fit(data.train, config, params), data, config)
            trial_run.log_metrics({f"validation_{k}": v for k, v in metrics.items() if v is not None})
        log.info("trial %d %s: validation %s=%s", number, params, config.selection_metric,
                 metrics.get(config.selection_metric))
        trials.append(Trial(params, metrics, trial_run.run_id))
    return trials


def best_trial(trials: list[Trial], config: AlsConfig) -> Trial:
    """The trial with the best ``config.selection_metric`` (first one on ties; undefined values lose)."""
    metric = config.selection_metric
    sign = 1.0 if config.minimize else -1.0

    def key(trial: Trial) -> float:
        value = trial.metrics.get(metric)
        return float("inf") if value is None else sign * value

    return min(trials, key=key)


RECOMMENDERS = ("popularity", "item_cf", "als")   # simplest first: a tie goes to the simpler one


@dataclass
class Selection:
    """The chosen grid point, the trials (empty for a one-point grid: nothing to choose, no child
    run) and the validation metrics of every recommender (``validation``: name in RECOMMENDERS →
    metrics; als is the chosen point)."""

    params: Params
    trials: list[Trial]
    validation: dict[str, dict[str, float]]
    guard_metric: str
    candidates: tuple[str, ...] = ("als", "item_cf")

    @property
    def served(self) -> str:
        """The recommender whose lists are served: the best of popularity and the ``candidates``
        (``als.serve_from``) on validation ``guard_metric``, a tie going to the simpler one (so
        ALS must beat item-based CF and popularity to be served)."""
        best = RECOMMENDERS[0]
        for name in (n for n in RECOMMENDERS[1:] if n in self.candidates):
            value, leader = (self.validation[n].get(self.guard_metric) for n in (name, best))
            if value is not None and (leader is None or value > leader):
                best = name
        return best


def select_params(config: AlsConfig, train: DataFrame, run: JobRun) -> Selection:
    """Choose the grid point on a validation split of ``train`` (user_idx, item_idx, rating, ts and
    the split's id columns; see :func:`~shopai_spark.recommend.split.validation_split`) and score
    item-based CF and popularity there too; the test rows are not read."""
    grid = param_grid(config)
    fit_rows, validation = validation_split(train, config)
    data = evaluation_set(fit_rows, validation, config)
    try:
        if len(grid) == 1:
            trials, chosen = [], Trial(grid[0], evaluate(fit(data.train, config, grid[0]), data, config), "")
        else:
            trials = tune(config, data, run)
            chosen = best_trial(trials, config)
        scores = {"als": chosen.metrics, "item_cf": evaluate_item_cf(data, config),
                  "popularity": evaluate_popularity(data, config)}
    finally:
        data.unpersist()
    return Selection(chosen.params, trials, scores, config.ranking_metric, tuple(config.serve_from))
