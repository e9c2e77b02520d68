"""Bench stages of the segments job on synthetic per-customer features (no silver tables needed).

small: 1,000,000 customers; large: 5,000,000. Features are drawn with ``spark.range`` around five
planted customer kinds (log-normal noise); the model reads six of them (FIT_FEATURES). Stages:
choose k on a 20,000-customer sample (k 2..8); fit scaler + K-Means with k = 8 on everyone (the
job's :func:`fit_with_ids`: sample start, then Lloyd passes on everyone); the peer, scikit-learn
``KMeans(n_clusters=8, n_init=segments.n_init)`` (k-means++, the same number of restarts as the
job, other settings its defaults) on the same standardised matrix (collected to this process
outside the timing), with ``time_vs_sklearn`` (our fit seconds / scikit-learn's seconds,
target <= 10) and ``cost_vs_sklearn`` (our cost / scikit-learn's inertia, target <= 1.01); then
assign + distance + profile + write gold.customer_segments, and the ARI against the planted kinds.
"""

from __future__ import annotations

import dataclasses
import time

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from shopai_spark.segment.config import ALL_FEATURES
from shopai_spark.segment.fitting import assign, fit_with_ids, select_k
from shopai_spark.segment.job import CUSTOMER_SEGMENTS
from shopai_spark.segment.metrics import adjusted_rand_index_df
from shopai_spark.segment.profiles import profile
from shopai_spark.segment.scaling import FEATURES_COL
from shopai_spark.tables import Lakehouse, with_run_metadata
from shopai_spark.tracking import JobRun

SIZES = {"small": 1_000_000, "large": 5_000_000}
FIT_FEATURES = ["recency_days", "frequency", "monetary", "avg_order_value", "avg_basket_size", "tenure_days"]
FIT_K = 8
# planted kinds: typical value of each feature (ALL_FEATURES order)
KINDS = [
    (5, 20, 2000, 100, 3, 100, 25, 0.2, 6, 330),    # champions
    (30, 8, 400, 50, 2, 40, 10, 0.2, 4, 250),       # loyal
    (180, 5, 600, 120, 1, 8, 2, 0.6, 2, 330),       # at risk
    (300, 1, 8, 8, 1, 3, 1, 0.3, 1, 300),           # hibernating
    (7, 1, 20, 20, 1.5, 15, 3, 0.07, 2, 10),        # new
]


def synthetic_features(spark, customers: int, partitions: int = 16):
    """``customers`` rows: user_id, truth (kind), has_orders and ALL_FEATURES drawn around KINDS."""
    kind = (F.col("id") % len(KINDS)).cast("int")
    df = spark.range(0, customers, numPartitions=partitions).withColumn("truth", kind)
    columns = []
    for j, name in enumerate(ALL_FEATURES):
        typical = F.element_at(F.array(*[F.lit(float(k[j])) for k in KINDS]), F.col("truth") + 1)
        noise = F.exp(F.randn(seed=j) * 0.25)
        value = F.least(typical * noise, F.lit(1.0)) if name == "conversion_rate" else typical * noise
        columns.append(value.alias(name))
    return df.select(F.concat(F.lit("u"), F.col("id").cast("string")).alias("user_id"), "truth",
                     F.lit(True).alias("has_orders"), *columns)


def standardised_matrix(model: PipelineModel, features, dims: int):
    """The matrix K-Means saw: ``features`` through the fitted pipeline's scaling stages, as numpy."""
    scaling = PipelineModel(stages=model.stages[:3])
    columns = [vector_to_array(FEATURES_COL)[j].alias(f"x{j}") for j in range(dims)]
    return scaling.transform(features).select(*columns).toPandas().to_numpy()


def sklearn_peer(bench, matrix, n_init: int, fit_seconds: float, fit_cost: float) -> None:
    """scikit-learn KMeans (k = FIT_K, ``n_init`` restarts) on ``matrix``: its time and cost, and our ratios."""
    from sklearn.cluster import KMeans

    with bench.stage("segments.sklearn_kmeans_peer", customers=len(matrix), k=FIT_K, features=matrix.shape[1],
                     n_init=n_init) as extra:
        started = time.perf_counter()
        peer = KMeans(n_clusters=FIT_K, n_init=n_init, random_state=0).fit(matrix)
        seconds = time.perf_counter() - started
        extra.update(iterations=int(peer.n_iter_), cost=round(float(peer.inertia_), 1),
                     time_vs_sklearn=round(fit_seconds / seconds, 1),
                     cost_vs_sklearn=round(fit_cost / float(peer.inertia_), 4))


def run(bench) -> None:
    customers = SIZES[bench.size]
    config = bench.config("segments.k_min=2", "segments.k_max=8", "spark.shuffle_partitions=16")
    cfg = dataclasses.replace(config.segments, features=FIT_FEATURES)
    tracking = JobRun(run_id="bench", active=False)
    lake = Lakehouse(bench.spark, config.lakehouse)

    with bench.stage("segments.features", customers=customers):
        features = synthetic_features(bench.spark, customers).persist(StorageLevel.MEMORY_AND_DISK)
        features.count()
    with bench.stage("segments.choose_k", customers=customers, sample=cfg.selection_sample,
                     ks=f"{cfg.k_min}..{cfg.k_max}", n_init=cfg.n_init) as extra:
        k, table = select_k(features, customers, cfg.features, cfg, tracking)
        extra.update(k=k, silhouette=round(float(table.loc[table["k"] == k, "silhouette"].iloc[0]), 4))
    with bench.stage("segments.fit", customers=customers, features=len(FIT_FEATURES), k=FIT_K,
                     n_init=cfg.n_init, sample=cfg.selection_sample) as extra:
        model, result = fit_with_ids(features, cfg.features, FIT_K, cfg, previous=None)
        extra.update(iterations=result.iterations, converged=result.converged, cost=round(result.cost, 1))
    sklearn_peer(bench, standardised_matrix(model, features, len(FIT_FEATURES)), cfg.n_init,
                 bench.records[-1]["seconds"], result.cost)
    with bench.stage("segments.assign_profile_write", customers=customers) as extra:
        segments = assign(model, features).persist(StorageLevel.MEMORY_AND_DISK)
        profiles = profile(segments, ALL_FEATURES)
        lake.overwrite(with_run_metadata(segments, "bench"), CUSTOMER_SEGMENTS)
        extra.update(segments=len(profiles))
    with bench.stage("segments.truth_ari", customers=customers) as extra:
        truth = features.select("user_id", "truth")
        extra.update(ari=round(adjusted_rand_index_df(segments.join(truth, "user_id"), "segment_id", "truth"), 4))
    segments.unpersist()
    features.unpersist()
