"""Configuration of the recommendations job (``jobs/als.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlsConfig:
    """ALS recommendations: feedback mode, model, evaluation and output sizes."""

    mode: str = "implicit"
    rank: int = 16
    reg_param: float = 0.1
    alpha: float = 10.0
    max_iter: int = 10
    top_n: int = 10
    seed: int = 42
