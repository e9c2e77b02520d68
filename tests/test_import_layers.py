"""The house's layers hold: the platform knows no domain, and no domain knows another.

Layers, from the ground up: the **platform** (every top-level module of ``shopai_spark`` not listed
below: config loading, session, tables, tracking, quality, runtime, ...), the **domains** (the
sub-packages: ``ingest``, ``recommend``, ``basket``, ``segment``, ``demand``, ``generate``) and the
**application** (:data:`APP`: the modules that compose domains: the app, the pipeline, the
notebook helpers, the configuration reference and the recommender comparison ``harness``). The
check reads every import of every module's syntax tree, including imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shopai_spark"
APP = {"app", "pipeline", "notebook", "config_reference", "harness"}


def layer_of(module: str) -> tuple[str, str]:
    """("platform" | "domain" | "app", name) of a dotted ``shopai_spark...`` module name."""
    parts = module.split(".")[1:]
    if not parts:
        return "platform", "shopai_spark"
    if PACKAGE.joinpath(parts[0]).is_dir():
        return "domain", parts[0]
    return ("app" if parts[0] in APP else "platform"), parts[0]


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every ``shopai_spark`` import in ``source`` (``from shopai_spark import x``
    counts as ``shopai_spark.x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("shopai_spark")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shopai_spark"):
            if node.module == "shopai_spark":
                found += [(node.lineno, f"shopai_spark.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(module: str, source: str) -> list[str]:
    """``"line N: a -> b (why)"`` for each import of ``source`` (the module ``module``) that runs
    against the layers."""
    kind, name = layer_of(module)
    out = []
    for line, target in imported_modules(source):
        target_kind, target_name = layer_of(target)
        if kind == "platform" and target_kind in ("domain", "app"):
            out.append(f"line {line}: {module} -> {target} (the platform imports a {target_kind})")
        elif kind == "domain" and target_kind == "app":
            out.append(f"line {line}: {module} -> {target} (a domain imports the application)")
        elif kind == "domain" and target_kind == "domain" and target_name != name:
            out.append(f"line {line}: {module} -> {target} (a domain imports another domain)")
    return out


def modules() -> list[tuple[str, Path]]:
    return [(".".join(("shopai_spark", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"),
             path) for path in sorted(PACKAGE.rglob("*.py"))]


def test_the_check_sees_each_kind_of_wrong_import():
    assert violations("shopai_spark.config", "from shopai_spark.recommend.config import AlsConfig\n")
    assert violations("shopai_spark.tracking", "def f():\n    import shopai_spark.app\n")
    assert violations("shopai_spark.recommend.job", "from shopai_spark.basket import rules\n")
    assert violations("shopai_spark.segment.job", "from shopai_spark import app\n")
    assert violations("shopai_spark.recommend.job", "from shopai_spark.recommend.train import fit\n"
                                                    "from shopai_spark.tables import Lakehouse\n") == []
    assert violations("shopai_spark.app", "from shopai_spark.recommend.job import run\n") == []


def test_every_layer_is_known():
    assert {layer_of(name)[0] for name, _ in modules()} == {"platform", "domain", "app"}
    assert {layer_of(name)[1] for name, _ in modules() if layer_of(name)[0] == "domain"} == {
        "basket", "demand", "generate", "ingest", "recommend", "segment"}


@pytest.mark.parametrize("name,path", modules(), ids=[name for name, _ in modules()])
def test_imports_follow_the_layers(name, path):
    assert violations(name, path.read_text()) == []
