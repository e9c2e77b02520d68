"""Segment profiles, readable names and segment ids that stay stable across runs.

Naming rule (:func:`name_segment`), on a K-Means centre in the standardised space (z-scores of the
log-transformed features, so 0 is the average customer with orders): with ``r = -z(recency_days)``
(recent is high), ``v = (z(frequency) + z(monetary)) / 2`` (value) and ``t = z(tenure_days)``:

1. ``r >= 0`` and ``v >= 0.5`` → **Champions** (recent, frequent, high spend)
2. ``r >= 0`` and ``t <= -0.5`` → **New** (recent, short tenure)
3. ``r >= 0`` and ``v >= 0`` → **Loyal**
4. ``r >= 0`` → **Promising** (recent, low value)
5. ``v >= 0`` → **At risk** (valuable, but not seen lately)
6. ``r <= -0.5`` → **Hibernating** (long gone, low value)
7. otherwise → **Needs attention**

A feature left out of ``segments.features`` counts as 0. Two segments with the same name get
" 2", " 3"... in segment-id order. Customers without orders are segment 0, **Prospects**.

Stable ids (:func:`stable_ids`): on the first run K-Means clusters get ids 1..k by decreasing mean
monetary value; on later runs the new centroids (original units) are matched to the previous run's
centroids read from gold.segment_profiles, both mapped through the current scaler, by a
minimum-total-distance one-to-one assignment (:func:`min_cost_assignment`, exact). Unmatched new
clusters (k grew) get fresh ids above the largest id used before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

PROSPECT_ID = 0
PROSPECT_NAME = "Prospects"


def name_segment(center: Sequence[float], features: Sequence[str]) -> str:
    """Readable name of one standardised centre by the rule in the module docstring."""
    z = dict(zip(features, center, strict=True))
    r = -z.get("recency_days", 0.0)
    v = (z.get("frequency", 0.0) + z.get("monetary", 0.0)) / 2
    t = z.get("tenure_days", 0.0)
    if r >= 0:
        if v >= 0.5:
            return "Champions"
        if t <= -0.5:
            return "New"
        return "Loyal" if v >= 0 else "Promising"
    if v >= 0:
        return "At risk"
    return "Hibernating" if r <= -0.5 else "Needs attention"


def unique_names(names_by_id: dict[int, str]) -> dict[int, str]:
    """Suffix repeated names with " 2", " 3"... in id order."""
    seen: dict[str, int] = {}
    out = {}
    for sid in sorted(names_by_id):
        name = names_by_id[sid]
        seen[name] = seen.get(name, 0) + 1
        out[sid] = name if seen[name] == 1 else f"{name} {seen[name]}"
    return out


def min_cost_assignment(cost: np.ndarray) -> list[int]:
    """Exact minimum-cost one-to-one assignment of rows to columns (rows <= columns).

    Returns ``col[i]`` for each row i. Dynamic programme over subsets of used columns: O(rows * 2**cols),
    instant for the k <= 15 the config allows.
    """
    cost = np.asarray(cost, dtype=float)
    n_rows, n_cols = cost.shape
    if n_rows > n_cols:
        raise ValueError(f"min_cost_assignment needs rows <= columns, got {cost.shape}")
    best = {0: (0.0, ())}  # used-columns mask → (cost, columns chosen for rows 0..i-1)
    for i in range(n_rows):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for mask, (total, cols) in best.items():
            for j in range(n_cols):
                if mask >> j & 1:
                    continue
                candidate = (total + cost[i, j], (*cols, j))
                key = mask | 1 << j
                if key not in nxt or candidate[0] < nxt[key][0]:
                    nxt[key] = candidate
        best = nxt
    return list(min(best.values(), key=lambda item: item[0])[1])


def stable_ids(new_centroids: np.ndarray, previous: dict[int, np.ndarray] | None,
               monetary: Sequence[float]) -> list[int]:
    """Segment id for each new cluster (row of ``new_centroids``, standardised space).

    ``previous``: previous segment id → its centroid mapped into the same space, or None on a first
    run (ids by decreasing ``monetary``; see module docstring).
    """
    k = len(new_centroids)
    if not previous:
        order = np.argsort(-np.asarray(monetary, dtype=float), kind="stable")
        ids = [0] * k
        for rank, cluster in enumerate(order):
            ids[cluster] = rank + 1
        return ids
    old_ids = sorted(previous)
    old = np.array([previous[i] for i in old_ids])
    distance = np.linalg.norm(new_centroids[:, None, :] - old[None, :, :], axis=2)
    fresh = iter(range(max(old_ids) + 1, max(old_ids) + 1 + k))
    if k <= len(old_ids):
        return [old_ids[j] for j in min_cost_assignment(distance)]
    matched_new = min_cost_assignment(distance.T)  # each old id → one new cluster
    by_cluster = {cluster: old_ids[j] for j, cluster in enumerate(matched_new)}
    return [by_cluster[c] if c in by_cluster else next(fresh) for c in range(k)]


def profile(segments: DataFrame, features: Sequence[str],
            by: Sequence[str] = ("segment_id", "segment_name")) -> pd.DataFrame:
    """Per group of ``by`` (default segment_id, segment_name): customers, share and the mean of each
    feature in original units (the centroid). Input: ``segments`` with ``by`` and ``features``.
    Collects one row per group, sorted by ``by``."""
    rows = (segments.groupBy(*by)
            .agg(F.count(F.lit(1)).alias("customers"), *[F.avg(f).alias(f) for f in features])
            .orderBy(*by).toPandas())
    rows["customers"] = rows["customers"].astype("int64")
    rows.insert(len(by) + 1, "share", rows["customers"] / rows["customers"].sum())
    return rows
