"""The Dask dashboard's link, said only where there is a dashboard to open.

A scheduler started without its dashboard (``dask scheduler --no-dashboard``,
``LocalCluster(dashboard_address=None)``) still serves HTTP on the dashboard's port (its
health and metrics pages), so ``client.dashboard_link`` still names a ``/status`` page there,
which does not exist. The page is asked for first (a HEAD request, :data:`PROBE_SECONDS` at
most): one the server says it does not have (404) is no dashboard, and the note says so; any
other answer is the dashboard (or distributed's page saying how to install bokeh for it); where
the server does not answer from here (a firewall, a tunnel, a link through a proxy), the link
is given as it is, with that said. What was found is kept, by the scheduler's address
(:func:`dashboard_served`), for what is said of the dashboard later in the same command.
"""

from __future__ import annotations

import logging

__all__ = ["PROBE_SECONDS", "dashboard_note", "dashboard_served", "has_page", "note_dashboard"]

#: Seconds the dashboard's page is given to answer before its link is given unchecked.
PROBE_SECONDS = 2.0
#: What :func:`dashboard_note` last found of each scheduler's dashboard, by its address.
_FOUND: dict[str, bool | None] = {}


def dashboard_served(scheduler: str) -> bool | None:
    """Whether the scheduler at ``scheduler`` (an address as ``--scheduler`` takes it:
    ``tcp://host:8786`` or ``host:8786``) serves its dashboard, as :func:`dashboard_note` last
    found it in this process: True, False (it serves none), None where its page did not answer
    from here or nothing was asked of it."""
    from distributed.comm.addressing import normalize_address

    try:
        return _FOUND.get(normalize_address(scheduler))
    except ValueError:  # no address distributed reads
        return None


def has_page(link: str, timeout: float = PROBE_SECONDS) -> bool | None:
    """Whether the web page ``link`` exists: False where its server answers 404, True for any
    other answer of the server (a page that only takes GET answers HEAD with 405), None where
    no server answers in ``timeout`` seconds or ``link`` is no http(s) address."""
    import urllib.error
    import urllib.request

    if not link.startswith(("http://", "https://")):
        return None
    try:
        # straight to the scheduler: a proxy of the environment (http_proxy on a cluster's
        # nodes) would answer for it, its 404 taken for the scheduler's
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(urllib.request.Request(link, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    except (OSError, ValueError):  # refused, timed out, a certificate not trusted here
        return None


def dashboard_note(client, timeout: float = PROBE_SECONDS) -> str | None:
    """What to say of the dashboard of ``client`` (a ``distributed.Client``): ``"Dask
    dashboard: LINK"`` where its page answers, with ``(no answer from it here: …)`` where
    nothing answers, that its scheduler serves none where it is not there, and None where the
    scheduler serves no HTTP at all (nothing to say)."""
    address = client.scheduler.address
    try:
        link = client.dashboard_link
    except (KeyError, AttributeError, TypeError):  # no HTTP server: no "dashboard" service
        link = None
    if not link:
        _FOUND[address] = False
        return None
    found = _FOUND[address] = has_page(link, timeout)
    if found is False:
        return (f"no Dask dashboard: the scheduler at {address} serves none (a "
                "scheduler started with --no-dashboard); without that flag it serves one, to "
                "watch the tasks under way")
    return f"Dask dashboard: {link}" + ("" if found else " (no answer from it here: open it "
                                        "where the scheduler's host can be reached)")


def note_dashboard(client, log=None) -> None:
    """Say :func:`dashboard_note` of ``client`` to ``log`` (None: a note of the ``cryostream``
    logger), if there is anything to say."""
    said = dashboard_note(client)
    if said:
        (log or logging.getLogger("cryostream").info)(said)
