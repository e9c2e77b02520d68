"""Choosing k by measurement: training cost (elbow) and silhouette for each k in a range.

Rule (:func:`choose_k`): the smallest k whose silhouette is within ``tolerance`` of the best
silhouette over the range. Silhouette rewards compact, well separated segments, and the tolerance
prefers fewer segments when a larger k buys next to nothing. The cost curve is logged alongside for
the reader (it always falls with k, so it is not used to decide).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.sql import DataFrame

from shopai_spark.segment.config import SegmentsConfig
from shopai_spark.segment.model import CLUSTER_COL, best_kmeans
from shopai_spark.segment.scaling import FEATURES_COL


def silhouette(scored: DataFrame) -> float:
    """Mean silhouette (squared Euclidean) of ``scored`` (columns ``features``, ``cluster``)."""
    evaluator = ClusteringEvaluator(featuresCol=FEATURES_COL, predictionCol=CLUSTER_COL, metricName="silhouette",
                                    distanceMeasure="squaredEuclidean")
    return float(evaluator.evaluate(scored))


def evaluate_k(scaled: DataFrame, ks: Iterable[int], config: SegmentsConfig) -> pd.DataFrame:
    """Fit K-Means (best of ``n_init``) for each k on ``scaled`` (a bounded sample with a ``features`` vector column;
    cache it first). Returns a pandas table: k, cost, silhouette, iterations."""
    rows = []
    for k in ks:
        model = best_kmeans(scaled, k, config)
        rows.append({"k": k, "cost": float(model.summary.trainingCost),
                     "silhouette": silhouette(model.transform(scaled)), "iterations": model.summary.numIter})
    return pd.DataFrame(rows, columns=["k", "cost", "silhouette", "iterations"])


def choose_k(table: pd.DataFrame, tolerance: float) -> int:
    """Smallest k with silhouette >= best silhouette - ``tolerance`` (see module docstring)."""
    best = table["silhouette"].max()
    return int(table.loc[table["silhouette"] >= best - tolerance, "k"].min())


CURVES = {"cost": "Training cost (elbow)", "silhouette": "Silhouette (higher is better)"}


def plot_curve(table: pd.DataFrame, column: str, chosen: int):
    """Matplotlib figure of ``column`` (cost or silhouette) against k, the chosen k marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    ax.plot(table["k"], table[column], marker="o")
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen k = {chosen}")
    ax.set_xlabel("k")
    ax.set_ylabel(column)
    ax.set_title(CURVES[column])
    ax.legend()
    figure.tight_layout()
    return figure
