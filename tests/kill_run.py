"""Send a job's own process a signal right after its N-th output commit (tests/test_job_runs.py).

    python tests/kill_run.py <SIGTERM|SIGSTOP|SIGKILL> <N> <job> <job args...>

:func:`signal_after_commits` counts the Delta commits of the job's outputs (table overwrites and
MERGEs that changed something) and, right after the N-th, signals this process: SIGTERM is handled
by the job (its run is undone and ends KILLED), SIGSTOP freezes the process so that a test can look
at the half-written lakehouse and then SIGKILL it.
"""

from __future__ import annotations

import os
import signal
import sys

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


if __name__ == "__main__":
    from shopai_spark.app import main

    signal_name, after, job, *job_args = sys.argv[1:]
    signal_after_commits(setattr, int(after), getattr(signal, signal_name))
    raise SystemExit(main(job, job_args))
