"""The Dask dashboard's link: said only where the scheduler serves that page."""

from __future__ import annotations

import socket

from distributed import Client, LocalCluster

from cryostream.dashboard import dashboard_note, dashboard_served, has_page


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_a_page_is_there_where_its_server_has_it():
    """A scheduler without its dashboard still serves HTTP on the dashboard's port: its
    /health page is there, its /status page is not (404); with the dashboard, /status is
    (HEAD: 405, the page takes GET alone). No server, or no http address: cannot tell. What
    was found is kept by the scheduler's address, with or without tcp://."""
    for served in (None, "127.0.0.1:0"):
        with LocalCluster(n_workers=0, dashboard_address=served, host="127.0.0.1") as cluster, \
                Client(cluster.scheduler_address) as client:
            link = client.dashboard_link
            assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
            assert has_page(link.replace("/status", "/health")) is True
            assert has_page(link) is (served is not None)
            note = dashboard_note(client)
            if served is None:
                assert note.startswith(f"no Dask dashboard: the scheduler at "
                                       f"{cluster.scheduler_address} serves none")
            else:
                assert note == f"Dask dashboard: {link}"
            for address in (cluster.scheduler_address,  # as given to --scheduler, either way
                            cluster.scheduler_address.removeprefix("tcp://")):
                assert dashboard_served(address) is (served is not None)
    assert dashboard_served(f"127.0.0.1:{_closed_port()}") is None  # nothing asked of it
    assert has_page(f"http://127.0.0.1:{_closed_port()}/status", timeout=2) is None
    assert has_page("/proxy/8787/status") is None  # a link template through a proxy


def test_the_page_is_asked_of_the_scheduler_not_of_a_proxy(tmp_path, monkeypatch):
    """On a cluster's nodes ``http_proxy`` is often set: the page was asked of the proxy, whose
    404 (here a plain file server's) said a scheduler with its dashboard served none."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with LocalCluster(n_workers=0, dashboard_address="127.0.0.1:0",
                          host="127.0.0.1") as cluster, Client(cluster.scheduler_address) as client:
            assert dashboard_note(client) == f"Dask dashboard: {client.dashboard_link}"
    finally:
        server.shutdown()
