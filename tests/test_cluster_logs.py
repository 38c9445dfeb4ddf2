"""cryostream.cluster_logs: a LocalCluster of cryostream's own kept quiet."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest


@pytest.mark.slow
def test_a_worker_started_again_by_its_nanny_is_quiet_too():
    """Each worker process of a LocalCluster of cryostream's own holds distributed's INFO back
    from its start, one that its nanny starts again after the first was killed (for its memory,
    say) too: the workers had been quieted once, after the cluster started (``client.run``,
    which had also raised distributed's CommClosedError where a worker had just died)."""
    from cryostream.cluster import compute_context

    with compute_context(workers=2, call="prepare", log=lambda line: None) as client:
        killed = next(iter(client.run(os.getpid).values()))
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:  # (a worker that has just died makes client.run fail: passed over)
            pids = set(client.run(os.getpid, on_error="ignore").values())
            if len(pids) == 2 and killed not in pids:
                break
            assert time.monotonic() < deadline, "the nanny started no worker again"
            time.sleep(0.2)
        levels = client.run(lambda: logging.getLogger("distributed").getEffectiveLevel())
        assert list(levels.values()) == [logging.WARNING] * 2, levels


def test_a_level_set_on_purpose_is_left_and_the_old_one_put_back():
    """distributed's own INFO is raised to WARNING while a LocalCluster runs and put back
    after; a DEBUG level a scientist set to look into the cluster is left as it is."""
    from cryostream.cluster_logs import quiet_distributed

    logger = logging.getLogger("distributed")
    before = logger.level
    try:
        for level, during in ((logging.INFO, logging.WARNING), (logging.DEBUG, logging.DEBUG),
                              (logging.ERROR, logging.ERROR)):
            logger.setLevel(level)
            with quiet_distributed():
                assert logger.getEffectiveLevel() == during
            assert logger.level == level
    finally:
        logger.setLevel(before)


#: A script as the quick start begins one (its logging lines at the top, which each worker
#: process runs again as it starts), then prepare on a LocalCluster of two workers, then a
#: warning of distributed's on a worker of a LocalCluster of cryostream's own.
_QUICKSTART_SCRIPT = '''\
import logging
import sys

import cryostream

logging.basicConfig(format="%(name)s: %(message)s")
logging.getLogger("cryostream").setLevel(logging.INFO)


def warn():
    logging.getLogger("distributed.worker").warning("a warning of distributed's")


if __name__ == "__main__":
    from cryostream.cluster import compute_context

    sim = cryostream.simulate(sys.argv[1] + "/sim", 2, shape=(128, 128), seed=0)
    cryostream.prepare(sim.micrographs, sys.argv[1] + "/d.h5",
                       cryostream.PrepareConfig(patch_size=64), workers=2)
    with compute_context(workers=1, call="prepare", log=lambda line: None) as client:
        client.run(warn)
'''


@pytest.mark.slow
def test_a_scripts_logging_lines_show_no_worker_start_up_of_distributeds(tmp_path):
    """The quick start's logging lines at the top of a script, then ``prepare(workers=2)``:
    about 30 lines of distributed's (each worker's start-up: 'Start worker at', 'Threads',
    'Memory', ..., then 'Run out-of-band function') came through the root handler that each
    worker process made as it ran the script's top again. Now none; cryostream's own notes
    (the dashboard's link) are there, and a warning of distributed's on a worker still is."""
    import subprocess
    import sys

    from tests.faults_support import child_environment

    script = tmp_path / "quickstart.py"
    script.write_text(_QUICKSTART_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=child_environment())
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if line.startswith("distributed")] == [
        "distributed.worker: a warning of distributed's"], done.stderr
    assert any(line.startswith("cryostream: Dask dashboard: http://127.0.0.1:") for line in lines)
    assert (tmp_path / "d.h5").is_file()


def test_a_wait_interrupted_before_its_work_began_logs_no_traceback(caplog):
    """A SIGTERM (or Ctrl-C) that ends distributed's wait for a call on the cluster before the
    event loop has begun that call: distributed's ``cancel`` raises ``NameError`` on the loop,
    and tornado logged its traceback under the command's last line (seen once in CI with
    ``denoise --cluster-workers 2`` stopped by SIGTERM). Made here as it happens: the loop busy
    while the interrupt comes. The record is there, and the filter the cluster call adds drops
    it; a NameError of any other code is still logged."""
    import asyncio
    import threading

    from distributed.utils import LoopRunner, sync

    from cryostream.cluster_logs import not_cancelled_before_start, quiet_interrupted_gathers

    logger = logging.getLogger("tornado.application")

    def interrupted_wait() -> list[logging.LogRecord]:
        runner = LoopRunner(asynchronous=False)
        runner.start()
        try:
            main = threading.get_ident()
            runner.loop.add_callback(time.sleep, 0.5)  # (the loop busy: the work not begun)
            threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT)).start()
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="tornado.application"):
                with pytest.raises(KeyboardInterrupt):
                    sync(runner.loop, asyncio.sleep, 0)
                time.sleep(0.8)
            return [r for r in caplog.records if r.name == "tornado.application"]
        finally:
            runner.stop()

    logger.removeFilter(not_cancelled_before_start)  # (another test may have added it)
    seen = interrupted_wait()
    assert seen and isinstance(seen[0].exc_info[1], NameError), seen
    assert not not_cancelled_before_start(seen[0])
    quiet_interrupted_gathers()
    assert interrupted_wait() == []
    try:
        print(undefined_name)  # noqa: F821
    except NameError:
        import sys
        other = logging.LogRecord("tornado.application", logging.ERROR, __file__, 1, "x", None,
                                  sys.exc_info())
    assert not_cancelled_before_start(other)
