"""The ALS grid is chosen on a validation split of the training rows, never on the test rows.

Explicit ratings with two planted taste groups (5 inside the user's group, 1 outside). The fixed
test set rates items of the user's own group 1: there the model that learnt nothing (heavy
regularisation, predictions near 0) has the lower RMSE, while on validation rows carved from the
training ratings the light one wins by far. The selection must follow validation.
"""

from __future__ import annotations

import datetime as dt

import mlflow
import pytest

from shopai_spark.recommend.train import Params, Selection, evaluate, evaluation_set, fit, select_params
from shopai_spark.tracking import tracked_run

T0 = dt.datetime(2024, 1, 1)
USERS, ITEMS = 30, 20
LIGHT, HEAVY = 0.05, 10.0


def group(index: int) -> int:
    return index % 2


def ratings(spark, rows):
    columns = "user_id STRING, item_id STRING, user_idx INT, item_idx INT, rating DOUBLE, ts TIMESTAMP, relevant BOOLEAN"
    return spark.createDataFrame([(f"u{u}", f"i{i}", u, i, float(r), T0 + dt.timedelta(days=d), r >= 4)
                                  for u, i, r, d in rows], columns)


def train_rows():
    """Each user rates 14 of the 20 items: 5 inside the group, 1 outside, one a day."""
    rows = []
    for u in range(USERS):
        items = [(u + step) % ITEMS for step in range(14)]
        rows += [(u, i, 5 if group(i) == group(u) else 1, day) for day, i in enumerate(items)]
    return rows


def held_out_rows():
    """The 6 items each user has not rated, those of the user's own group rated 1."""
    rows = []
    for u in range(USERS):
        unseen = [(u + step) % ITEMS for step in range(14, ITEMS)]
        rows += [(u, i, 1, 30) for i in unseen if group(i) == group(u)]
    return rows


def test_the_grid_is_chosen_on_validation_not_on_test(spark, make_config):
    config = make_config("als.mode=explicit", "als.split=leave_last_k", "als.leave_k=3", "als.rank=4",
                         "als.max_iter=8", "als.num_blocks=2", "als.checkpoint_interval=2",
                         f"als.grid={{reg_param: [{LIGHT}, {HEAVY}]}}")
    train, test = ratings(spark, train_rows()), ratings(spark, held_out_rows())
    with tracked_run(config.tracking, "als") as run:
        selection = select_params(config.als, train, run)

    data = evaluation_set(train, test, config.als)
    on_test = {reg: evaluate(fit(data.train, config.als, Params(4, reg, 1.0, 8)), data, config.als)["rmse"]
               for reg in (LIGHT, HEAVY)}
    data.unpersist()
    assert on_test[HEAVY] < on_test[LIGHT]            # choosing on test would pick the heavy one
    assert selection.params.reg_param == LIGHT        # chosen on validation
    by_reg = {t.params.reg_param: t.metrics["rmse"] for t in selection.trials}
    assert by_reg[LIGHT] < by_reg[HEAVY] and selection.validation["als"]["rmse"] == by_reg[LIGHT]

    children = mlflow.search_runs([mlflow.get_run(run.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run.run_id}'")
    assert sorted(children["params.als.reg_param"].astype(float)) == [LIGHT, HEAVY]
    assert sorted(children["metrics.validation_rmse"]) == pytest.approx(sorted(by_reg.values()))
    assert not [c for c in children.columns if c.startswith("metrics.test_")]


def test_a_single_grid_point_is_not_tuned_but_compared_with_item_cf_and_popularity_on_validation(spark, make_config):
    config = make_config("als.mode=explicit", "als.rank=3", "als.leave_k=3")
    with tracked_run(config.tracking, "als") as run:
        selection = select_params(config.als, ratings(spark, train_rows()), run)
    assert selection.params.rank == 3 and selection.trials == []       # nothing chosen, no child run
    # validation = each user's last 3 ratings, scored for the model and popularity on the same rows
    als, item_cf, popularity = (selection.validation[name] for name in ("als", "item_cf", "popularity"))
    assert als["predictions"] == popularity["predictions"] == 3 * USERS
    assert als["rmse"] < popularity["rmse"]
    # 6 candidates per user, every rated item a positive of the ranking model: ALS ranks the one
    # 5-star item a little worse than popularity does, item-based CF a little better: it is served
    assert selection.guard_metric == "ndcg_at_k"
    assert als["ndcg_at_k"] < popularity["ndcg_at_k"] < item_cf["ndcg_at_k"]
    assert selection.served == "item_cf"


def test_the_served_recommender_is_the_best_on_validation_and_a_tie_goes_to_the_simpler():
    def served(als, item_cf, popularity):
        scores = {"als": {"ndcg_at_k": als}, "item_cf": {"ndcg_at_k": item_cf}, "popularity": {"ndcg_at_k": popularity}}
        return Selection(Params(1, 0.1, 1.0, 1), [], scores, "ndcg_at_k").served

    assert served(0.3, 0.2, 0.1) == "als"
    assert served(0.2, 0.3, 0.1) == "item_cf"
    assert served(0.2, 0.2, 0.1) == "item_cf"        # ALS must beat item-based CF, not tie with it
    assert served(0.1, 0.1, 0.1) == "popularity"
    assert served(None, 0.05, 0.1) == "popularity"   # undefined never wins
    assert served(0.2, None, None) == "als"
    only_als = Selection(Params(1, 0.1, 1.0, 1), [], {"als": {"ndcg_at_k": 0.2}, "item_cf": {"ndcg_at_k": 0.3},
                                                    "popularity": {"ndcg_at_k": 0.1}}, "ndcg_at_k", ("als",))
    assert only_als.served == "als"                # als.serve_from=[als]: item-based CF is scored, never served
