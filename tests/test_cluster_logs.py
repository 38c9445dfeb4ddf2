"""cryostream.cluster_logs: a LocalCluster of cryostream's own kept quiet."""

from __future__ import annotations

import logging
import os
import signal

import pytest


@pytest.mark.slow
def test_quieting_the_workers_of_a_cluster_whose_worker_just_died_goes_on():
    """``quiet_workers`` runs as the cluster starts; a worker that dies then (killed for its
    memory, say: the nanny starts another) made ``client.run`` raise distributed's
    CommClosedError, a traceback before any work, for the sake of fewer log lines (2 times in
    3 a kill). Now the workers still there are quieted and the command goes on."""
    from distributed import Client, LocalCluster

    from cryostream.cluster_logs import quiet_distributed, quiet_workers

    with quiet_distributed(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for _ in range(5):  # (the scheduler may remove the dead worker first: then no error)
            pids = client.run(os.getpid)
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            quiet_workers(client)  # at once, as the scheduler learns the worker is gone
            client.wait_for_workers(2, timeout=60)
        quiet_workers(client)  # (a worker the nanny started again is not quiet until then)
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
