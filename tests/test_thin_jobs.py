"""Every job's ``run`` reads as a short list of named steps: no function in a ``shopai_spark/*/job.py``
is longer than :data:`MAX_LINES` (docstring included); logic lives in functions of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JOB_MODULES = sorted((Path(__file__).resolve().parents[1] / "shopai_spark").glob("*/job.py"))
MAX_LINES = 45


def long_functions(source: str, limit: int = MAX_LINES) -> list[str]:
    """``"name (N lines)"`` for every function of ``source`` longer than ``limit`` lines."""
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > limit]


def test_the_check_counts_lines():
    body = "\n".join(f"    x{i} = {i}" for i in range(50))
    assert long_functions(f"def long():\n{body}\n\ndef short():\n    return 1\n") == ["long (51 lines)"]


@pytest.mark.parametrize("module", JOB_MODULES, ids=lambda p: p.parent.name)
def test_job_functions_are_short(module):
    assert long_functions(module.read_text()) == []
