"""A Spark Connect server on this machine, from the installed pyspark, with Delta.

``make connect-test`` and ``make bench`` run the jobs through it; a user can try the Connect mode
of the jobs (``--set spark.remote=sc://127.0.0.1:15002``) the same way::

    python -m shopai_spark.connect_server [--port 15002] [--workdir DIR]

The server is ``org.apache.spark.sql.connect.service.SparkConnectServer`` started by
``spark-submit`` (local[2] inside, Delta jars from Maven through ``--packages`` as
:func:`~shopai_spark.session.delta_package` names them), bound to 127.0.0.1. Its Python workers
run this interpreter (``PYSPARK_PYTHON``), so the UDFs find numpy, pandas and ``shopai_spark``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyspark

from shopai_spark.session import DELTA_CONF, delta_package

SPARK_HOME = Path(pyspark.__file__).parent
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConnectServer:
    """A Spark Connect server (local[2] inside) as a child process; ``stop()`` kills it by PID."""

    def __init__(self, workdir: Path, port: int | None = None, driver_memory: str = "3g"):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"sc://127.0.0.1:{self.port}"
        self.log = workdir / "connect-server.log"
        self.driver_memory = driver_memory
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        conf = {
            **DELTA_CONF,
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.checkpoint.dir": str(self.workdir / "checkpoints"),
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -Xss16m",
            "spark.ui.enabled": "false",
            "spark.log.level": "WARN",
        }
        return [str(SPARK_HOME / "bin" / "spark-submit"), "--class", SERVER_CLASS, "--name", "Spark Connect server",
                "--master", "local[2]", "--driver-memory", self.driver_memory, "--packages", delta_package(),
                *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]]

    def start(self, timeout: float = 180) -> None:
        # the server's Python workers run the UDFs: the same venv (numpy, pandas, shopai_spark); a
        # Connect server takes the interpreter from PYSPARK_PYTHON, not from spark.pyspark.python
        env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
               "PYSPARK_PYTHON": sys.executable}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.workdir, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:   # the gRPC service listens
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"Spark Connect server did not start within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=15002)
    parser.add_argument("--workdir", help="checkpoints and the server log (default: a temp folder)")
    args = parser.parse_args(argv)
    server = ConnectServer(Path(args.workdir or tempfile.mkdtemp(prefix="shopai-connect-")), args.port)
    server.start()
    print(f"Spark Connect server at {server.url} (log: {server.log}); Ctrl-C stops it", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
