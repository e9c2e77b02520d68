"""Every notebook in notebooks/ runs locally, in order, with dbutils/display shims."""

from __future__ import annotations

import pytest

from .conftest import LOCAL_CONF, ROOT, base_overrides
from .notebook_shims import notebook_cells, run_notebook

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
SMALL = ["generate.users=300", "generate.skus=60", "generate.days=120", "generate.events_per_user=20",
         "generate.dirt_share=0.01", "segments.k_max=5", "demand.forecast=true"]


def test_notebooks_are_databricks_source_with_widgets():
    assert [p.name for p in NOTEBOOKS] == ["00_overview.py", "01_ingest.py", "02_recommendations.py",
                                           "03_association_rules.py", "04_segments.py", "05_demand_features.py",
                                           "06_evaluate_recommenders.py"]
    for path in NOTEBOOKS:
        cells = notebook_cells(path)
        assert any("declare_widgets(dbutils, PARAMETERS)" in c for c in cells), f"{path.name} declares no widgets"
        logic = [line for c in cells for line in c.splitlines() if line.startswith(("def ", "class "))]
        assert not logic, f"{path.name} defines its own logic: {logic}"


def test_every_notebook_runs_in_order(spark, tmp_path, mlflow_store):
    """The overview notebook generates and ingests (steps widget), then each job notebook runs on
    that lakehouse and displays its results; a parameter widget reaches the job's config."""
    widgets = {"conf": str(LOCAL_CONF), "overrides": ";".join([*base_overrides(tmp_path, mlflow_store), *SMALL]),
               "steps": "generate_data,ingest", "als.top_n": "5", "fpgrowth.min_support": "0.005"}
    displayed = {path.name: run_notebook(path, spark, widgets) for path in NOTEBOOKS}

    overview = displayed["00_overview.py"][0]
    assert set(overview["job"]) == {"generate_data", "ingest"} and (overview["rows"] > 0).all()
    quarantine = displayed["01_ingest.py"][0]
    assert {"source", "reason", "count"} <= set(quarantine.columns) and quarantine["count"].sum() > 0
    user_recs, similar = displayed["02_recommendations.py"]
    assert list(user_recs["rank"]) == [1, 2, 3, 4, 5] and user_recs["user_id"].nunique() == 1
    assert len(similar) > 0 and similar["sku"].nunique() == 1
    rules, companions = displayed["03_association_rules.py"]
    assert len(rules) > 0 and (rules["support"] >= 0.005).all() and len(companions) > 0
    profiles, _ = displayed["04_segments.py"]
    assert 2 <= len(profiles) <= 5 and profiles["segment_name"].notna().all()
    series, signal = displayed["05_demand_features.py"]
    assert len(series) > 30 and series["date"].is_monotonic_increasing and (series["units"] >= 0).all()
    assert len(signal) == 1
    assert signal["reorder_point_units"].iloc[0] == pytest.approx(
        signal["forecast_lead_time_units"].iloc[0] + signal["safety_stock_units"].iloc[0])
    (comparison,) = displayed["06_evaluate_recommenders.py"]
    assert list(comparison["recommender"]) == ["popularity", "item_cf", "rules", "als"]
