"""A Dask scheduler as a script has it in hand: its address, a ``distributed.Client`` or a
cluster object (``LocalCluster``, a dask-jobqueue cluster), each taken as the address of its
scheduler, to which ``prepare`` and ``denoise`` connect a client of their own."""

from __future__ import annotations

from cryostream.errors import ConfigError

__all__ = ["scheduler_address"]


def scheduler_address(scheduler):
    """The address of ``scheduler``: as given where it is an address (or None), its scheduler's
    where it is a ``distributed.Client`` or a cluster object (``scheduler_address``); anything
    else as given, for :func:`~cryostream.cluster.check_cluster_options` to name.

    Raises
    ------
    ConfigError
        A Client or cluster that is closed (or closing): it has no scheduler to run on.
    """
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    from distributed import Client

    kind = type(scheduler).__name__
    if not isinstance(scheduler, Client) and not hasattr(scheduler, "scheduler_address"):
        return scheduler
    status = str(getattr(scheduler, "status", "")).rsplit(".", 1)[-1]  # (a cluster's: an enum)
    rpc = scheduler.scheduler if isinstance(scheduler, Client) else None
    if status in ("closing", "closed") or (isinstance(scheduler, Client) and rpc is None):
        raise ConfigError(f"scheduler={scheduler!r} (--scheduler): a closed {kind} has no "
                          "scheduler; give one that runs (close it once the call has returned)")
    return rpc.address if rpc is not None else scheduler.scheduler_address
