"""A Dask scheduler as a script has it in hand: its address, a ``distributed.Client`` or a
cluster object (``LocalCluster``, a dask-jobqueue cluster), each taken as the address of its
scheduler, to which ``prepare`` and ``denoise`` connect a client of their own; the address
checked before any work (:func:`reachable_scheduler`): well formed, and answering."""

from __future__ import annotations

import socket

from cryostream.errors import ConfigError

__all__ = ["scheduler_address", "scheduler_host_port", "check_scheduler_reachable",
           "reachable_scheduler", "CONNECT_TIMEOUT"]

#: Seconds :func:`check_scheduler_reachable` waits for a scheduler to accept a connection.
CONNECT_TIMEOUT = 5.0

_NETWORK_PROTOCOLS = ("tcp", "tls", "ws", "wss")


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


def reachable_scheduler(scheduler):
    """The address of ``scheduler`` (:func:`scheduler_address`), checked to answer there
    (:func:`check_scheduler_reachable`); None as it is. ``prepare`` and ``denoise`` call it
    before their first note or written file: a scheduler that is gone is refused at once.

    Raises
    ------
    ConfigError
        A closed Client or cluster, a malformed address, or nothing answering there.
    """
    address = scheduler_address(scheduler)
    if address is not None:
        check_scheduler_reachable(address)
    return address


def scheduler_host_port(scheduler) -> tuple[str, int] | None:
    """``(host, port)`` of a network scheduler address, ``None`` for other transports."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    fix = "give the address the scheduler prints, e.g. tcp://10.0.0.5:8786"
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ConfigError(f"scheduler={scheduler!r} (--scheduler): not a scheduler address; {fix}")
    try:
        protocol, location = parse_address(scheduler)
        if protocol not in backends:
            raise ValueError(f"unknown protocol {protocol!r}")
        if protocol not in _NETWORK_PROTOCOLS:
            return None
        host, port = parse_host_port(location)
        if not host or not 0 < int(port) < 65536:
            raise ValueError("no host or no valid port")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scheduler={scheduler!r} (--scheduler): not a scheduler address "
                          f"({exc}); {fix}") from None
    return host, int(port)


def check_scheduler_reachable(scheduler: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Check that something accepts connections at a scheduler's address, within ``timeout``
    seconds (distributed itself would wait 30 s before giving up).

    Raises
    ------
    ConfigError
        The address is malformed, or nothing answers there in time.
    """
    address = scheduler_host_port(scheduler)
    if address is None:  # in-process or UCX: distributed checks it
        return
    try:
        with socket.create_connection(address, timeout=timeout):
            pass
    except OSError as exc:
        reason = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                  else exc.strerror or str(exc))
        raise ConfigError(f"scheduler={scheduler!r} (--scheduler): no scheduler reachable at "
                          f"{address[0]}:{address[1]} ({reason}); start it first or check the "
                          "address") from None
