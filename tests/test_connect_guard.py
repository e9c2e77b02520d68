"""No JVM-only API in the library: Spark Connect (Databricks serverless, shared clusters) has no
SparkContext, no RDDs and no py4j gateway, so any of them would break the jobs there.

The check reads the syntax tree of every module under ``shopai_spark/`` and ``jobs/``: attribute
access (``spark.sparkContext``, ``df.rdd``, ``x._jvm``, ``x._jsc``, ``df._jdf``) and imports of
``SparkContext`` / ``RDD`` / ``pyspark.mllib``. Comments and docstrings may still name them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_ATTRIBUTES = {"sparkContext", "rdd", "_jvm", "_jsc", "_jdf", "_jsparkSession", "_sc"}
FORBIDDEN_NAMES = {"SparkContext", "RDD", "Broadcast"}
FORBIDDEN_MODULES = ("pyspark.mllib", "pyspark.rdd", "py4j")


def jvm_only_uses(source: str, filename: str = "<source>") -> list[str]:
    """``"line N: what"`` for each JVM-only API used in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module.startswith(FORBIDDEN_MODULES) or names & FORBIDDEN_NAMES:
                found.append(f"line {node.lineno}: from {module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.startswith(FORBIDDEN_MODULES)]
    return sorted(found, key=lambda text: int(text.split()[1].rstrip(':')))


def library_modules() -> list[Path]:
    return sorted([*ROOT.joinpath("shopai_spark").rglob("*.py"), *ROOT.joinpath("jobs").glob("*.py")])


def test_guard_sees_each_kind_of_jvm_use():
    source = ("from pyspark import SparkContext\nimport py4j\n"
              "a = spark.sparkContext\nb = df.rdd.map(f)\nc = spark._jvm\nd = sc._jsc\n")
    assert [f.split(":")[0] for f in jvm_only_uses(source)] == [
        "line 1", "line 2", "line 3", "line 4", "line 5", "line 6"]
    assert jvm_only_uses('"""no sparkContext here, nor df.rdd"""\nx = df.select("rdd")  # .rdd\n') == []


@pytest.mark.parametrize("module", library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_uses_no_jvm_only_api(module):
    assert jvm_only_uses(module.read_text(), str(module)) == [], \
        f"{module.relative_to(ROOT)} uses an API Spark Connect does not have"
