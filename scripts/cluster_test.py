"""Run every job with spark-submit on a real Spark standalone cluster started on this machine.

One master and two workers are started from the installed pyspark (``spark-class``, bound to
127.0.0.1); the pipeline runs as one application, ``spark-submit --master spark://127.0.0.1:<port>
--py-files dist/shopai_spark.zip jobs/pipeline.py --conf conf/cluster.yaml``, with the lakehouse, raw
files and MLflow store overridden to a local folder (one application: its executors stay up from
job to job, as on a shared cluster, where one application per job paid the executors' start and
warm-up six times). Then every job's tables and MLflow run are checked.

Then a re-run of ``als``, submitted alone as ``jobs/als.py`` (a job's own entry point), is killed (SIGKILL to spark-submit, which takes its driver with it) once it
has logged that it is tuning: every ALS output table must still be at its previous Delta version with
the same rows. Last, ``fpgrowth`` runs again and one worker (with its executor) is killed once the
job has logged its first step: the job must finish on the remaining worker with the same rows as the
undisturbed run. The cluster is stopped by PID at the end — also when a job fails.

    python scripts/cluster_test.py [--jobs generate_data,ingest,...] [--workdir DIR] [--no-kill-test]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyspark
from pipeline_checks import JOBS, ROOT, check_outputs, overrides, table_rows, table_state

from shopai_spark.connect_server import free_port
from shopai_spark.session import delta_package

SPARK_HOME = Path(pyspark.__file__).parent
KILLED_JOB = "als"
KILL_WHEN_LOGGED = "als | index ids"   # the job is past reading its input, before any write
WORKER_LOSS_JOB = "fpgrowth"
LOSE_WORKER_WHEN_LOGGED = "fpgrowth | baskets"   # its Spark work (guard, FP-Growth, rules) is ahead


class StandaloneCluster:
    """A master and ``workers`` workers as child processes; ``stop()`` kills them by PID."""

    def __init__(self, workdir: Path, workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.workers, self.cores, self.memory = workers, cores, memory
        self.processes: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "w")
        env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_WORKER_DIR": str(self.workdir / f"{name}-work")}
        self.processes.append(subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args],
                                               stdout=log, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))

    def start(self) -> None:
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(free_port()))
        self._wait_for_log("master", "I have been elected leader")
        for i in range(self.workers):
            self._start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                        "--cores", str(self.cores), "--memory", self.memory, "--webui-port", str(free_port()))
        for i in range(self.workers):
            self._wait_for_log(f"worker{i}", "Successfully registered with master")

    def _wait_for_log(self, name: str, text: str, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in (self.workdir / f"{name}.log").read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{name} did not log {text!r} within {timeout:.0f} s; see {self.workdir}/{name}.log")

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and its executors (its process group)."""
        os.killpg(self.processes[1 + index].pid, signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def build_zip(dist: Path) -> Path:
    """Zip of the ``shopai_spark`` package for ``--py-files``."""
    dist.mkdir(parents=True, exist_ok=True)
    archive = shutil.make_archive(str(dist / "shopai_spark"), "zip", root_dir=ROOT, base_dir="shopai_spark")
    return Path(archive)


def submit_command(cluster_url: str, py_files: Path, job: str, workdir: Path, *args: str) -> list[str]:
    """spark-submit of ``jobs/<job>.py`` (``pipeline`` for the pipeline) with ``args`` before the settings."""
    return [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster_url,
        "--packages", delta_package(), "--py-files", str(py_files),
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", "spark.executor.memory=1g", "--conf", "spark.sql.session.timeZone=UTC",
        str(ROOT / "jobs" / f"{job}.py"), *args, "--conf", str(ROOT / "conf" / "cluster.yaml"), "--verbose", *overrides(workdir),
    ]


def kill_mid_run(cluster_url: str, py_files: Path, workdir: Path) -> None:
    """Start KILLED_JOB again, SIGKILL it once KILL_WHEN_LOGGED appears, check its tables are unchanged."""
    before = table_state(workdir, JOBS[KILLED_JOB])
    command = submit_command(cluster_url, py_files, KILLED_JOB, workdir) + ["--set", "als.rank=12"]
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if KILL_WHEN_LOGGED in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    if not any(KILL_WHEN_LOGGED in line for line in seen):
        print("".join(seen[-80:]))
        raise AssertionError(f"kill test: {KILLED_JOB} ended before logging {KILL_WHEN_LOGGED!r}")
    after = table_state(workdir, JOBS[KILLED_JOB])
    if after != before:
        raise AssertionError(f"kill test: tables changed by a killed run: before {before}, after {after}")
    print(f"cluster-test: {KILLED_JOB} killed mid-run; its tables kept their versions {before}", flush=True)


def lose_a_worker(cluster: StandaloneCluster, py_files: Path, workdir: Path) -> None:
    """Run WORKER_LOSS_JOB again (recomputing, same settings), SIGKILL worker 1 once it logs
    LOSE_WORKER_WHEN_LOGGED; it must finish with the rows of the undisturbed run."""
    tables = JOBS[WORKER_LOSS_JOB]
    undisturbed = table_rows(workdir, tables)
    command = submit_command(cluster.url, py_files, WORKER_LOSS_JOB, workdir) + [
        "--set", "lakehouse.skip_unchanged_runs=false"]
    proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, killed = [], False
    for line in proc.stdout:
        seen.append(line)
        if not killed and LOSE_WORKER_WHEN_LOGGED in line:
            cluster.kill_worker(1)
            killed = True
    if proc.wait() != 0 or not killed:
        print("".join(seen[-80:]))
        raise AssertionError(f"worker loss: {WORKER_LOSS_JOB} exited {proc.returncode} (worker killed: {killed})")
    if table_rows(workdir, tables) != undisturbed:
        raise AssertionError(f"worker loss: {WORKER_LOSS_JOB} wrote other rows than the undisturbed run")
    print(f"cluster-test: {WORKER_LOSS_JOB} lost a worker mid-run and wrote the same rows", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--workdir")
    parser.add_argument("--no-kill-test", action="store_true", help="skip the killed-run and worker-loss checks")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="shopai-cluster-"))
    workdir.mkdir(parents=True, exist_ok=True)
    py_files = build_zip(workdir / "dist")
    cluster = StandaloneCluster(workdir)
    try:
        cluster.start()
        print(f"cluster up at {cluster.url} (master + {cluster.workers} workers)", flush=True)
        jobs = args.jobs.split(",")
        started = time.perf_counter()
        result = subprocess.run(submit_command(cluster.url, py_files, "pipeline", workdir, "--steps", args.jobs),
                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            print(result.stdout[-6000:])
            raise SystemExit(f"cluster-test: the pipeline ({args.jobs}) failed with exit code {result.returncode}")
        for job in jobs:
            check_outputs(job, workdir)
        print(f"cluster-test: {len(jobs)} jobs ok in one application in {time.perf_counter() - started:.0f} s", flush=True)
        if not args.no_kill_test and KILLED_JOB in jobs:
            kill_mid_run(cluster.url, py_files, workdir)
        if not args.no_kill_test and WORKER_LOSS_JOB in jobs:
            lose_a_worker(cluster, py_files, workdir)
    finally:
        cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
