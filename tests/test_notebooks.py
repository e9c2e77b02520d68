"""Every notebook in notebooks/ runs locally, in order, with dbutils/display shims."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import LOCAL_CONF, ROOT, base_overrides
from .notebook_shims import notebook_cells, run_notebook
from .test_ingest import write_raw

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_notebooks_are_databricks_source_with_widgets():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        cells = notebook_cells(path)
        assert any("declare_widgets(dbutils)" in c for c in cells), f"{path.name} declares no widgets"
        logic = [line for c in cells for line in c.splitlines() if line.startswith(("def ", "class "))]
        assert not logic, f"{path.name} defines its own logic: {logic}"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name == "01_ingest.py"], ids=lambda p: p.name)
def test_ingest_notebook_runs(path: Path, spark, tmp_path, mlflow_store):
    write_raw(tmp_path / "raw")
    widgets = {"conf": str(LOCAL_CONF), "overrides": ";".join(base_overrides(tmp_path, mlflow_store))}
    displayed = run_notebook(path, spark, widgets)
    assert len(displayed) == 1 and {"source", "reason", "count"} <= set(displayed[0].columns)
    assert displayed[0]["count"].sum() > 0
