"""Several server processes on one port, each with its own listening socket.

uvicorn's ``--workers`` shares one listening socket: every idle worker wakes
on a new connection and the first one accepts the whole burst, so 8 clients
that connect at once can all land on one worker while the other idles (the
serving benchmark saw half the throughput and twice the p99 that way). Here
each worker binds its own socket with ``SO_REUSEPORT`` and the kernel spreads
new connections over them, as nginx's and gunicorn's ``reuseport`` do.

A worker that dies is started again (one that dies as it starts stops the
service with an error rather than a restart loop); SIGINT or SIGTERM stops
them all, each finishing the requests it has in hand.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time

from shopsense.errors import ShopsenseError

LOG = logging.getLogger(__name__)
APP = "shopsense.serving.app:app_from_environment"
STOP_SECONDS = 30
SETTLE_SECONDS = 60  # a worker that dies sooner is failing to start, not crashing


def spreads_connections() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` (Linux and the BSDs do)."""
    return hasattr(socket, "SO_REUSEPORT")


def serve_workers(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Run ``workers`` server processes on ``host:port`` until told to stop."""
    if port == 0:
        raise ShopsenseError("several workers need a fixed --port (0 would give each its own)")
    _listening_socket(host, port).close()  # a port already taken fails here, clearly
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(host, port, log_level), daemon=False)
        process.start()
        return process

    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    running = [start() for _ in range(workers)]
    started = [time.monotonic()] * workers
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(running):
                if process.is_alive():
                    continue
                if time.monotonic() - started[i] < SETTLE_SECONDS:
                    raise ShopsenseError(
                        f"a server worker exited with {process.exitcode} as it started "
                        "(its error is above)"
                    )
                LOG.warning("worker %s exited with %s; starting another", process.pid,
                            process.exitcode)  # fmt: skip
                running[i], started[i] = start(), time.monotonic()
    finally:
        for process in running:
            process.terminate()  # SIGTERM: uvicorn finishes what it has in hand
        for process in running:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _worker(host: str, port: int, log_level: str) -> None:
    import uvicorn

    config = uvicorn.Config(APP, factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port)])


def _listening_socket(host: str, port: int) -> socket.socket:
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ShopsenseError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock
