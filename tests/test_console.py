"""The quiet console: step lines and warnings on stdout; a child process's stderr (Spark's JVM),
Python warnings and every other log record in the log file."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

from shopai_spark.console import STEPS, quiet_console


def test_quiet_console_sends_the_chatter_to_the_log_file(tmp_path, capfd):
    with quiet_console("unit", tmp_path) as path:
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('WARN NativeCodeLoader: jvm noise\\n')"],
                       check=True)
        warnings.warn("mlflow schema hint", UserWarning, stacklevel=1)
        logging.getLogger("shopai_spark.tables").info("wrote gold/x (version 3)")
        STEPS.info("als | index ids users=3 (0.1 s)")
        logging.getLogger("shopai_spark.segment").warning("K-Means stopped before converging")
    out, err = capfd.readouterr()
    assert out.splitlines() == ["als | index ids users=3 (0.1 s)", "K-Means stopped before converging"]
    assert err == ""
    logged = path.read_text()
    assert path.parent == tmp_path and path.name.startswith("unit-")
    for text in ("jvm noise", "mlflow schema hint", "wrote gold/x", "als | index ids", "K-Means stopped"):
        assert text in logged


def test_everything_is_put_back_when_the_block_raises(tmp_path, capfd):
    root = logging.getLogger()
    handlers = root.handlers[:]
    try:
        with quiet_console("boom", tmp_path):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    print("after", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child after\\n')"], check=True)
    assert capfd.readouterr().err == "after\nchild after\n"
    assert root.handlers == handlers


def test_a_long_step_says_it_is_still_running(tmp_path, capfd, monkeypatch):
    import time

    from shopai_spark import runtime

    monkeypatch.setattr(runtime, "PROGRESS_SECONDS", 0.2)
    ctx = runtime.JobContext(config=None, platform=None, spark=None, lakehouse=None, run=None, job="segments",
                             ledger=None)
    with quiet_console("progress", tmp_path):
        with ctx.step("choose k") as step:
            time.sleep(0.5)
            step.update(k=5)
        with ctx.step("write"):
            pass
    lines = capfd.readouterr().out.splitlines()
    beats = [line for line in lines if "still running" in line]
    assert len(beats) == 2 and all(line.startswith("segments | choose k … still running (") for line in beats)
    assert lines[-2].startswith("segments | choose k k=5 (0.5 s)") and lines[-1].startswith("segments | write (0.0 s)")
