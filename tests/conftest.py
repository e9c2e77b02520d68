"""Shared test fixtures: one Spark + Delta session for the whole run, per-test lakehouse folders,
one local MLflow store (SQLite) for the run, and a way to build configs pointing at them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from shopai_spark.app import AppConfig, load_config, main
from shopai_spark.config import SparkConfig
from shopai_spark.session import get_spark

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LOCAL_CONF = ROOT / "conf" / "local.yaml"
# The generated shop the job end-to-end tests share (400 customers, 300 SKUs, one year, 1% dirt).
SHOP = ["generate.users=400", "generate.events_per_user=20", "generate.dirt_share=0.01"]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[2] Spark session with Delta, 2 shuffle partitions and no UI, shared by all tests."""
    tmp = tmp_path_factory.mktemp("spark")
    session = get_spark(SparkConfig(
        master="local[2]", app_name="shopai_spark-tests", shuffle_partitions=2, ui_enabled=False,
        # 4g: on pyspark 4.2.0 the whole suite in one 2g driver ran out of broadcast memory late in the run
        driver_memory="4g", checkpoint_dir=str(tmp / "checkpoints"),
        conf={"spark.sql.warehouse.dir": str(tmp / "warehouse"), "spark.default.parallelism": "2"},
    ))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> dict[str, str]:
    """One SQLite tracking store + artifact folder for the whole test run."""
    tmp = tmp_path_factory.mktemp("mlflow")
    return {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", "artifact_location": str(tmp / "mlruns")}


@pytest.fixture
def make_config(tmp_path, mlflow_store, spark) -> Callable[..., AppConfig]:
    """``make_config("als.rank=4", ...)``: conf/local.yaml pointed at this test's temp folders.

    Lakehouse and raw files live under ``tmp_path``; the experiment is unique per test.
    """
    def build(*overrides: str) -> AppConfig:
        return load_config(LOCAL_CONF, [*base_overrides(tmp_path, mlflow_store), *overrides])

    return build


def base_overrides(tmp_path: Path, mlflow_store: dict[str, str]) -> list[str]:
    """--set overrides that move every output of conf/local.yaml into ``tmp_path``."""
    experiment = f"test-{tmp_path.name}"
    return [
        f"lakehouse.root={tmp_path / 'lakehouse'}",
        f"generate.raw_dir={tmp_path / 'raw'}",
        f"ingest.events.path={tmp_path / 'raw' / 'events'}",
        f"ingest.orders.path={tmp_path / 'raw' / 'orders'}",
        f"ingest.products.path={tmp_path / 'raw' / 'products'}",
        f"tracking.tracking_uri={mlflow_store['tracking_uri']}",
        f"tracking.artifact_location={mlflow_store['artifact_location']}",
        f"tracking.experiment={experiment}",
        f"spark.checkpoint_dir={tmp_path / 'checkpoints'}",
    ]


def cli_args(tmp_path: Path, mlflow_store: dict[str, str], *overrides: str) -> list[str]:
    """``--conf conf/local.yaml --set ...`` as a user types them, pointed at ``tmp_path``."""
    return ["--conf", str(LOCAL_CONF), "--log-dir", str(tmp_path / "logs"), *[a for s in (*base_overrides(tmp_path, mlflow_store), *overrides)
                                          for a in ("--set", s)]]


@pytest.fixture(scope="session")
def generated_shop(tmp_path_factory, mlflow_store, spark) -> Path:
    """The lakehouse of a generated shop (SHOP) after generate → ingest through the jobs' entry
    point, built once per test run. Tests take a copy with :func:`shop_lakehouse`."""
    return build_shop(tmp_path_factory.mktemp("shop"), mlflow_store, SHOP)


def build_shop(root: Path, mlflow_store: dict[str, str], settings: Sequence[str]) -> Path:
    """Generate a shop with ``settings`` (``generate.*`` overrides) under ``root`` and ingest it,
    through the jobs' entry point; returns its lakehouse folder."""
    args = cli_args(root, mlflow_store, *settings)
    assert main("generate_data", args) == 0
    assert main("ingest", args) == 0
    return root / "lakehouse"


@pytest.fixture
def shop_lakehouse(generated_shop, tmp_path) -> Path:
    """A private copy of the generated shop's lakehouse at ``tmp_path/lakehouse`` (where
    :func:`base_overrides` points ``lakehouse.root``), so a job test can write its gold tables."""
    return Path(shutil.copytree(generated_shop, tmp_path / "lakehouse"))


def shared_data(name: str) -> Path:
    """Path of a file under ../shared/data, or skip the test with a clear message when absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real-data test: {path} not found (../shared/data is only present in the dev workspace)")
    return path

