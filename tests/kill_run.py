"""Run a job in its own process under a test's control (tests/test_job_runs.py).

    python tests/kill_run.py <SIGTERM|SIGSTOP|SIGKILL> <N> <job> <job args...>
    python tests/kill_run.py TOGETHER <folder> <job> <job args...>

With a signal: :func:`signal_after_commits` counts the Delta commits of the job's outputs (table
overwrites and MERGEs that changed something) and, right after the N-th, signals this process:
SIGTERM is handled by the job (its run is undone and ends KILLED), SIGSTOP freezes the process so
that a test can look at the half-written lakehouse and then SIGKILL it.

TOGETHER: :func:`start_together` holds the job at the start of its run (before the run ledger's
``begin``) until a second process waits in the same folder, so that two runs start at one instant.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from shopai_spark.runs import RunLedger
from shopai_spark.tables import Lakehouse


def signal_after_commits(patch, after: int, signum: int) -> None:
    """Wrap Lakehouse.overwrite and Lakehouse._merge_changes with ``patch(owner, name, value)`` (e.g.
    pytest's ``monkeypatch.setattr``) so that this process gets ``signum`` right after the ``after``-th
    commit they make."""
    commits = 0

    def counted(method):
        def wrapper(self, *args, **kwargs):
            nonlocal commits
            result = method(self, *args, **kwargs)
            if result != {}:   # _merge_changes returns {} when it committed nothing
                commits += 1
                if commits == after:
                    os.kill(os.getpid(), signum)
            return result
        return wrapper

    for name in ("overwrite", "_merge_changes"):
        patch(Lakehouse, name, counted(getattr(Lakehouse, name)))


def start_together(patch, folder: Path, parties: int = 2, timeout: float = 600) -> None:
    """Wrap RunLedger.begin so that it waits until ``parties`` processes wait in ``folder`` (each
    leaves a file named by its process id), then begins."""
    begin = RunLedger.begin

    def waiting(self, *args, **kwargs):
        (folder / str(os.getpid())).touch()
        deadline = time.time() + timeout
        while len(list(folder.iterdir())) < parties:
            if time.time() > deadline:
                raise TimeoutError(f"no other process joined in {folder} within {timeout} s")
            time.sleep(0.05)
        return begin(self, *args, **kwargs)

    patch(RunLedger, "begin", waiting)


if __name__ == "__main__":
    from shopai_spark.app import main

    mode, value, job, *job_args = sys.argv[1:]
    if mode == "TOGETHER":
        start_together(setattr, Path(value))
    else:
        signal_after_commits(setattr, int(value), getattr(signal, mode))
    raise SystemExit(main(job, job_args))
