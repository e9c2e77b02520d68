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


def build_als(config: AlsConfig, params: Params) -> ALS:
    """The MLlib estimator for ``params`` (users/items without factors are dropped when scoring)."""
    return ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", implicitPrefs=config.mode == "implicit",
               rank=params.rank, regParam=params.reg_param, alpha=params.alpha, maxIter=params.max_iter,
               seed=config.seed, checkpointInterval=config.checkpoint_interval, numUserBlocks=config.num_blocks,
               numItemBlocks=config.num_blocks, coldStartStrategy="drop")


def fit(train: DataFrame, config: AlsConfig, params: Params) -> ALSModel:
    """Fit ALS on ``train`` (user_idx, item_idx, rating)."""
    return build_als(config, params).fit(train.select("user_idx", "item_idx", "rating"))


@dataclass
class EvalSet:
    """A split ready for evaluation.

    ``truth``: relevant test (user_idx, item_idx) of users that have train history (implicit: every
    test interaction; explicit: test ratings >= positive_threshold). ``exclude``: train
    (user_idx, item_idx), never recommended during evaluation. ``catalog_size``: distinct train items.
    """

    train: DataFrame
    test: DataFrame
    truth: DataFrame
    exclude: DataFrame
    catalog_size: int

    def unpersist(self) -> None:
        for frame in (self.train, self.test, self.truth):
            frame.unpersist()


def evaluation_set(train: DataFrame, test: DataFrame, config: AlsConfig) -> EvalSet:
    """Persist ``train``/``test`` and derive the relevance truth (see :class:`EvalSet`)."""
    train = train.select("user_idx", "item_idx", "rating").persist(StorageLevel.MEMORY_AND_DISK)
    test = test.select("user_idx", "item_idx", "rating").persist(StorageLevel.MEMORY_AND_DISK)
    relevant = test if config.mode == "implicit" else test.where(F.col("rating") >= config.positive_threshold)
    known = train.select("user_idx").distinct()
    truth = relevant.join(known, "user_idx").select("user_idx", "item_idx").distinct() \
        .persist(StorageLevel.MEMORY_AND_DISK)
    catalog = train.select("item_idx").distinct().count()
    return EvalSet(train, test, truth, train.select("user_idx", "item_idx"), catalog)


def evaluate(model: ALSModel, data: EvalSet, config: AlsConfig) -> dict[str, float]:
    """Ranking metrics at ``config.k`` (users of ``data.truth``), plus RMSE/MAE in explicit mode."""
    users = model.userFactors.join(data.truth.select(F.col("user_idx").alias("id")).distinct(), "id")
    recs = recommend_all(users, collect_item_factors(model.itemFactors), config.k, data.exclude, config.block_size)
    metrics = ranking_metrics(recs, data.truth, config.k, data.catalog_size)
    if config.mode == "explicit":
        metrics.update(error_metrics(model.transform(data.test)))
    return metrics


def evaluate_popularity(data: EvalSet, config: AlsConfig) -> dict[str, float]:
    """The same metrics for the popularity baseline (explicit: item-mean predictions for RMSE/MAE)."""
    users = data.truth.select("user_idx").distinct()
    recs = popularity_recommend(users, data.train, config.k, data.exclude, config.block_size)
    metrics = ranking_metrics(recs, data.truth, config.k, data.catalog_size)
    if config.mode == "explicit":
        metrics.update(error_metrics(item_mean_predictions(data.train, data.test)))
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


@dataclass
class Selection:
    """The chosen grid point, with the trials and the chosen trial's validation metrics (both
    empty for a one-point grid: nothing is chosen, no validation split is made)."""

    params: Params
    trials: list[Trial]
    validation: dict[str, float]


def select_params(config: AlsConfig, train: DataFrame, run: JobRun) -> Selection:
    """Choose the grid point on a validation split of ``train`` (user_idx, item_idx, rating, ts and
    the split's id columns; see :func:`~shopai_spark.recommend.split.validation_split`); the test
    rows are not read."""
    grid = param_grid(config)
    if len(grid) == 1:
        return Selection(grid[0], [], {})
    fit_rows, validation = validation_split(train, config)
    data = evaluation_set(fit_rows, validation, config)
    try:
        trials = tune(config, data, run)
    finally:
        data.unpersist()
    best = best_trial(trials, config)
    return Selection(best.params, trials, best.metrics)
