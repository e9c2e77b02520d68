"""Item-based CF against a plain-Python computation of the same formulas (shrunk cosine of binary
co-occurrence, top neighbours, summed scores with exclusions), on random data with ties."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pytest

from shopai_spark.recommend.itemcf import capped_pairs, item_cf_recommend, item_neighbours

NEIGHBOURS, SHRINKAGE, TOP = 3, 2.0, 4


def random_pairs(seed: int = 3) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return sorted({(u, rng.randrange(12)) for u in range(40) for _ in range(rng.randrange(1, 7))})


def python_neighbours(pairs, neighbours, shrinkage):
    users_of = defaultdict(set)
    for user, item in pairs:
        users_of[item].add(user)
    rows = {}
    for i in users_of:
        sims = []
        for j in users_of:
            both = len(users_of[i] & users_of[j])
            if i != j and both:
                sims.append((-(both / math.sqrt(len(users_of[i]) * len(users_of[j])) * both / (both + shrinkage)), j))
        rows[i] = [(j, -s) for s, j in sorted(sims)[:neighbours]]
    return rows


def python_recommend(pairs, neighbours, n, excluded):
    items_of = defaultdict(set)
    for user, item in pairs:
        items_of[user].add(item)
    out = {}
    for user, items in items_of.items():
        scores = defaultdict(float)
        for i in items:
            for j, s in neighbours.get(i, []):
                scores[j] += s
        ranked = sorted((-s, j) for j, s in scores.items() if j not in items and (user, j) not in excluded)
        out[user] = [(j, -s) for s, j in ranked[:n]]
    return out


def test_neighbours_and_scores_match_plain_python(spark):
    pairs = random_pairs()
    feedback = spark.createDataFrame(pairs, "user_idx INT, item_idx INT")
    want = python_neighbours(pairs, NEIGHBOURS, SHRINKAGE)
    got = defaultdict(list)
    for r in item_neighbours(feedback, NEIGHBOURS, SHRINKAGE, max_user_items=100).orderBy("item_idx", "rank").collect():
        got[r["item_idx"]].append((r["other_idx"], r["similarity"]))
    assert set(got) == set(want)
    for item, row in want.items():
        assert [j for j, _ in got[item]] == [j for j, _ in row], item
        assert [s for _, s in got[item]] == pytest.approx([s for _, s in row])

    excluded = {(u, (u * 7) % 12) for u in range(0, 40, 3)}
    recs = item_cf_recommend(feedback.select("user_idx"), feedback, item_neighbours(feedback, NEIGHBOURS, SHRINKAGE, 100),
                             TOP, spark.createDataFrame(sorted(excluded) * 2, "user_idx INT, item_idx INT"))
    by_user = defaultdict(list)
    for r in recs.orderBy("user_idx", "rank").collect():
        by_user[r["user_idx"]].append((r["item_idx"], r["score"]))
    expected = {u: row for u, row in python_recommend(pairs, want, TOP, excluded).items() if row}
    assert set(by_user) == set(expected)
    for user, row in expected.items():
        assert [j for j, _ in by_user[user]] == [j for j, _ in row], user
        assert [s for _, s in by_user[user]] == pytest.approx([s for _, s in row])


def test_a_heavy_user_counts_with_a_fixed_sample_of_items(spark):
    frame = spark.createDataFrame([(0, i) for i in range(50)] + [(1, 3), (1, 3)], "user_idx INT, item_idx INT")
    capped = capped_pairs(frame, 10)
    counts = {r["user_idx"]: r["count"] for r in capped.groupBy("user_idx").count().collect()}
    assert counts == {0: 10, 1: 1}
    assert sorted(capped.collect()) == sorted(capped_pairs(frame.orderBy("item_idx"), 10).collect())
