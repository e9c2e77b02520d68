"""Run Databricks source-format notebooks locally: cells split on ``# COMMAND ----------``, MAGIC
lines skipped, with small shims for ``dbutils.widgets`` and ``display``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CELL_SEPARATOR = "# COMMAND ----------"


class Widgets:
    """``dbutils.widgets``: text widgets whose values a test can preset."""

    def __init__(self, values: dict[str, str]):
        self.preset = dict(values)
        self.values: dict[str, str] = {}

    def text(self, name: str, default: str, label: str | None = None) -> None:
        self.values[name] = self.preset.get(name, default)

    dropdown = combobox = lambda self, name, default, choices=None, label=None: self.text(name, default)

    def get(self, name: str) -> str:
        if name not in self.values:
            raise KeyError(f"widget {name!r} was never declared")
        return self.values[name]


class DBUtils:
    def __init__(self, widgets: dict[str, str]):
        self.widgets = Widgets(widgets)


def notebook_cells(path: Path) -> list[str]:
    """Code cells of a Databricks source notebook (markdown cells dropped)."""
    text = path.read_text()
    if not text.startswith("# Databricks notebook source"):
        raise ValueError(f"{path} is not a Databricks source notebook")
    cells = []
    for cell in text.split(CELL_SEPARATOR):
        code = "\n".join(line for line in cell.splitlines()
                         if not line.startswith(("# MAGIC", "# Databricks notebook source")))
        if code.strip():
            cells.append(code)
    return cells


def run_notebook(path: Path, spark: Any, widgets: dict[str, str]) -> list[Any]:
    """Execute every cell in one namespace; return what was passed to ``display`` (evaluated)."""
    displayed: list[Any] = []

    def display(obj: Any) -> None:
        if hasattr(obj, "limit"):  # a Spark DataFrame: evaluate it, as the notebook UI would
            obj = obj.limit(1000).toPandas()
        displayed.append(obj)

    namespace = {"spark": spark, "dbutils": DBUtils(widgets), "display": display, "__name__": "__notebook__"}
    for number, code in enumerate(notebook_cells(path), start=1):
        try:
            exec(compile(code, f"{path.name}[cell {number}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{path.name} cell {number} failed: {exc!r}") from exc
    return displayed
