"""Run the whole pipeline through a real Spark Connect server started on this machine.

A Spark Connect server (:class:`shopai_spark.connect_server.ConnectServer`: the installed pyspark's
server with Delta, bound to 127.0.0.1) is started; each job then runs as a
user runs it, ``python jobs/<job>.py --conf conf/local.yaml --set spark.remote=sc://127.0.0.1:<port>``,
in a process with no JVM of its own: every DataFrame, Delta and ``pyspark.ml`` call goes through the
server. After each job its tables and its MLflow run are checked (:mod:`pipeline_checks`); the
logged ALS model is then loaded back through Connect. The server is stopped by PID at the end, also
when a job fails.

``--local`` runs the same jobs on a local session instead (``jobs/pipeline.py``, one process): the
Spark 4.0 smoke run of ``make smoke-spark40``.

    python scripts/connect_test.py [--local] [--jobs generate_data,ingest,...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyspark
from pipeline_checks import JOBS, ROOT, check_outputs, overrides

from shopai_spark.connect_server import ConnectServer

CONF = ROOT / "conf" / "local.yaml"


def run_job(command: list[str], job: str, workdir: Path, merge_stderr: bool = True) -> str:
    """Run ``command`` in ``workdir``; its standard output (with standard error when
    ``merge_stderr``), or SystemExit with its tail when it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, text=True)
    if result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-6000:] if result.stderr else "")
        raise SystemExit(f"{job} failed with exit code {result.returncode}")
    print(f"  {job} ok in {time.perf_counter() - started:.0f} s", flush=True)
    return result.stdout


CONSOLE_LINES = 110  # two screens of a 55-line terminal (make demo printed 105 lines when this was set)


def check_quiet_console(output: str, workdir: Path) -> None:
    """The pipeline's console has its step lines and no Spark, Ivy or stage-bar output; that went
    to the log file it names."""
    noise = [line for line in output.splitlines() if " WARN " in line or ":: resolution" in line or "[Stage " in line]
    logs = sorted((workdir / "logs").glob("pipeline-*.log"))
    if noise or "ingest | " not in output or not logs or f"log: logs/{logs[-1].name}" not in output:
        raise AssertionError(f"console not quiet or no log file: noise {noise[:5]}, logs {logs}")
    if len(output.splitlines()) > CONSOLE_LINES:
        raise AssertionError(f"console has {len(output.splitlines())} lines, more than two screens ({CONSOLE_LINES})")
    print(f"  console: {len(output.splitlines())} lines, no Spark/Ivy output (in {logs[-1].name})", flush=True)


def load_als_model_through(remote: str, workdir: Path) -> None:
    """Load the ALS run's model with :func:`shopai_spark.tracking.load_spark_model` over Connect
    and score one user-item pair with it (a separate process, like any user's notebook)."""
    code = f"""
import mlflow
from shopai_spark.config import SparkConfig
from shopai_spark.session import session_for
from shopai_spark.tracking import load_spark_model
mlflow.set_tracking_uri("sqlite:///{workdir / 'mlflow.db'}")
run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.job = 'als'").iloc[0]
with session_for(SparkConfig(remote="{remote}")) as spark:
    model = load_spark_model(spark, f"runs:/{{run['run_id']}}/model")
    pair = spark.read.format("delta").load("{workdir / 'lakehouse' / 'gold' / 'als_user_index'}").limit(1) \\
        .crossJoin(spark.read.format("delta").load("{workdir / 'lakehouse' / 'gold' / 'als_item_index'}").limit(1))
    assert model.transform(pair).select("prediction").first()[0] is not None
"""
    subprocess.run([sys.executable, "-c", code], cwd=workdir, check=True)
    print("  ALS model loaded back and scored through Spark Connect", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="a local session instead of a Connect server")
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="shopai-connect-"))
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = args.jobs.split(",")
    settings = ["--conf", str(CONF), *overrides(workdir)]
    if args.local:   # the quiet console (the default a user gets): its stdout is checked below
        print(f"pipeline on a local session, pyspark {pyspark.__version__}", flush=True)
        output = run_job([sys.executable, str(ROOT / "jobs" / "pipeline.py"), "--steps", ",".join(jobs), *settings],
                         "pipeline", workdir, merge_stderr=False)
        check_quiet_console(output, workdir)
        for job in jobs:
            check_outputs(job, workdir)
        print(f"smoke: {len(jobs)} jobs ok on pyspark {pyspark.__version__}", flush=True)
    else:
        server = ConnectServer(workdir)
        try:
            server.start()
            print(f"Spark Connect server up at {server.url} (pyspark {pyspark.__version__})", flush=True)
            for job in jobs:
                run_job([sys.executable, str(ROOT / "jobs" / f"{job}.py"), *settings, "--verbose",
                         "--set", f"spark.remote={server.url}"], job, workdir)
                check_outputs(job, workdir)
            if "als" in jobs:
                load_als_model_through(server.url, workdir)
        finally:
            server.stop()
        print(f"connect-test: {len(jobs)} jobs ok through Spark Connect", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
