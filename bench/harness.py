"""Benchmark harness: times stages and samples peak memory, writes results with machine and versions.

``python -m bench.harness --size small|large [--only NAME ...] [--connect]`` imports every
``bench/bench_*.py`` module and calls its ``run(bench: Bench)``. ``--connect`` starts a Spark
Connect server on this machine and runs the modules through it (stage names end in "(Spark
Connect)"; ``make bench`` runs the ALS stages both ways, so each ratio is measured within one run). A module measures its stages with::

    with bench.stage("ingest", rows=n):
        ...

Peak memory is the highest resident set size (RSS) of this process plus all its children (the
Spark JVM in local mode), sampled every 0.2 s. Results are appended to ``bench/results/results.json``
(one record per stage) and ``bench/results/results.md`` is rewritten from it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            ppid, pages = int(parts[1]), int(parts[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


class PeakMemory:
    """Samples the process tree's RSS in a thread; ``peak_mb`` after ``stop()``."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def start(self) -> PeakMemory:
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
        return self.peak / 2**20


@dataclass
class Bench:
    """Context handed to each bench module: size, a work folder, the Spark session and results."""

    size: str
    workdir: Path
    spark: Any
    connect: bool = False   # the session is a Spark Connect client (stage names say so)
    records: list[dict[str, Any]] = field(default_factory=list)

    def config(self, *overrides: str):
        """conf/local.yaml with lakehouse, raw files and MLflow under this bench's work folder."""
        from shopai_spark.app import load_config

        base = [
            f"lakehouse.root={self.workdir / 'lakehouse'}",
            f"generate.raw_dir={self.workdir / 'raw'}",
            f"ingest.events.path={self.workdir / 'raw' / 'events'}",
            f"ingest.orders.path={self.workdir / 'raw' / 'orders'}",
            f"ingest.products.path={self.workdir / 'raw' / 'products'}",
            f"tracking.tracking_uri=sqlite:///{self.workdir / 'mlflow.db'}",
            f"tracking.artifact_location={self.workdir / 'mlruns'}",
            f"spark.checkpoint_dir={self.workdir / 'checkpoints'}",
        ]
        return load_config(ROOT / "conf" / "local.yaml", [*base, *overrides])

    @contextmanager
    def stage(self, name: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Measure the body: wall seconds and peak MB; the body may add figures to the yielded dict."""
        extra: dict[str, Any] = dict(info)
        memory = PeakMemory().start()
        started = time.perf_counter()
        try:
            yield extra
        finally:
            seconds = time.perf_counter() - started
            peak = memory.stop()
        if self.connect:
            name = f"{name} (Spark Connect)"
        record = {"stage": name, "size": self.size, "seconds": round(seconds, 2), "peak_mb": round(peak),
                  **extra, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.records.append(record)
        print(f"[bench] {name} ({self.size}): {seconds:.1f} s, peak {peak:.0f} MB {extra}", flush=True)


def machine() -> dict[str, Any]:
    import delta
    import mlflow
    import pyspark

    mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    try:
        delta_version = importlib.metadata.version("delta-spark")
    except Exception:  # pragma: no cover
        delta_version = getattr(delta, "__version__", "?")
    return {"cpus": os.cpu_count(), "mem_gb": round(mem_kb / 2**20, 1), "python": platform.python_version(),
            "pyspark": pyspark.__version__, "delta_spark": delta_version, "mlflow": mlflow.__version__,
            "platform": platform.platform()}


def write_results(records: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "results.json"
    history = json.loads(path.read_text()) if path.exists() else {"runs": []}
    history["runs"].append({"machine": machine(), "records": records})
    path.write_text(json.dumps(history, indent=2) + "\n")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run in history["runs"]:
        for rec in run["records"]:
            latest[(rec["stage"], rec["size"])] = {**rec, **{"machine": run["machine"]}}
    lines = ["# Benchmark results", "", "Latest measurement per stage and size (`make bench`; "
             "`make bench BENCH_SIZE=large` for the large size).", "",
             "| stage | size | seconds | peak MB | details | measured at | machine |", "|---|---|---|---|---|---|---|"]
    for (stage, size), rec in sorted(latest.items()):
        details = ", ".join(f"{k}={v}" for k, v in rec.items()
                            if k not in ("stage", "size", "seconds", "peak_mb", "measured_at", "machine"))
        m = rec["machine"]
        lines.append(f"| {stage} | {size} | {rec['seconds']} | {rec['peak_mb']} | {details} | {rec['measured_at']} | "
                     f"{m['cpus']} cpu, {m['mem_gb']} GB, pyspark {m['pyspark']}, delta {m['delta_spark']} |")
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["small", "large"], default="small")
    parser.add_argument("--only", nargs="*", help="bench module names, e.g. ingest als")
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "results" / "tmp"))
    parser.add_argument("--driver-memory", default="8g", help="Spark driver memory (local mode: all of Spark)")
    parser.add_argument("--connect", action="store_true",
                        help="run through a Spark Connect server started here (same driver memory)")
    args = parser.parse_args(argv)

    from shopai_spark.app import load_config
    from shopai_spark.connect_server import ConnectServer
    from shopai_spark.console import verbose_console
    from shopai_spark.session import get_spark

    verbose_console()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    settings = [f"spark.checkpoint_dir={workdir / 'ckpt'}", f"spark.driver_memory={args.driver_memory}"]
    server = ConnectServer(workdir / "server", driver_memory=args.driver_memory) if args.connect else None
    if server is not None:
        server.start()
        settings.append(f"spark.remote={server.url}")
    try:
        spark = get_spark(load_config(ROOT / "conf" / "local.yaml", settings).spark)
        bench = Bench(size=args.size, workdir=workdir, spark=spark, connect=server is not None)
        run_modules(bench, args.only)
        spark.stop()
    finally:
        if server is not None:
            server.stop()
    write_results(bench.records)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run_modules(bench: Bench, only: list[str] | None) -> None:
    """Every bench module's ``run(bench)`` (or those named in ``only``), ingest first."""
    names = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))
    order = ["ingest"] + [n for n in names if n != "ingest"]  # ingest first: others read its tables
    for name in [n for n in order if n in names and (not only or n in only)]:
        importlib.import_module(f"bench.bench_{name}").run(bench)


if __name__ == "__main__":
    raise SystemExit(main())
