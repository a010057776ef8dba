"""How ``serve`` runs: its claim on the port, and several server processes on
it, each with its own listening socket, under a supervisor.

uvicorn's ``--workers`` shares one listening socket: every idle worker wakes
on a new connection and the first one accepts the whole burst, so 8 clients
that connect at once can all land on one worker while the other idles (the
serving benchmark saw half the throughput and twice the p99 that way). Here
each worker binds its own socket with ``SO_REUSEPORT`` and the kernel spreads
new connections over them, as nginx's and gunicorn's ``reuseport`` do.

``SO_REUSEPORT`` would as well let a second service bind beside a running one
and take half its connections, so ``serve`` first claims the port
(:class:`PortClaim`) and refuses one that another shopsense holds.

The supervisor starts the workers and replaces any that dies, whatever its
age; one that dies before it is ready is retried after a growing pause, and
after :data:`START_ATTEMPTS` failures in a row the service stops with that
worker's own last words (the last line of its stderr, the exception that
stopped it). Each worker watches a socket whose other end only the supervisor
holds: the kernel closes it however the supervisor ends, ``kill -9``
included, and the worker then stops too. SIGINT or SIGTERM stops them all,
each finishing the requests it has in hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from shopsense.errors import ShopsenseError
from shopsense.serving.metrics import MULTIPROCESS_FOLDER
from shopsense.serving.protocol import HeadLimitedHttpTools

LOG = logging.getLogger(__name__)
APP = "shopsense.serving.app:app_from_environment"
STOP_SECONDS = 30  # for a worker to finish what it has in hand before it is killed
START_ATTEMPTS = 4  # failed starts in a row of one worker that stop the service
FIRST_RETRY_SECONDS = 1.0  # the pause after a failed start, doubled after each one
POLL_SECONDS = 0.2
READY = b"ready"


def spreads_connections() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` (Linux and the BSDs do)."""
    return hasattr(socket, "SO_REUSEPORT")


def run_service(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Run the service on ``host:port`` with ``workers`` processes until told
    to stop. One worker is this process itself (as is uvicorn's own
    ``--workers`` where the kernel cannot spread connections); port 0 (any
    free port) has nothing to claim."""
    if workers > 1 and port == 0:
        raise ShopsenseError("several workers need a fixed --port (0 would give each its own)")
    with PortClaim(host, port) if port else contextlib.nullcontext() as claim:
        if workers > 1 and spreads_connections():
            _supervise(host, port, workers, claim, log_level)
            return
        import uvicorn

        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                    http=HeadLimitedHttpTools)  # fmt: skip


class PortClaim:
    """This user's claim on a port for one service: an exclusive ``flock`` on a
    file named after the port, taken before anything listens and inherited by
    every worker, so it is held while any process of the service may answer.

    The port alone is the key, as 0.0.0.0 and 127.0.0.1 overlap. The kernel
    drops a ``flock`` when the last process holding it exits, so ``kill -9``
    of everything leaves no stale claim, only an unlocked file. A service the
    lock cannot see (started under another temporary folder, or by a shopsense
    without the claim) is still refused when it answers on the port."""

    def __init__(self, host: str, port: int) -> None:
        self.folder = Path(tempfile.gettempdir()) / f"shopsense-{os.getuid()}-port-{port}"
        self.folder.mkdir(mode=0o700, exist_ok=True)
        self._lock = open(self.folder / "lock", "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "unknown"
            self.release()
            raise ShopsenseError(
                f"another shopsense (pid {holder}) is already serving on port {port}"
            ) from None
        self._lock.truncate(0)
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()
        try:
            _listening_socket(host, port).close()  # a port another program holds fails here
            if _answers(host, port):
                raise ShopsenseError(
                    f"something already answers on {host}:{port} (another shopsense?)"
                )
        except ShopsenseError:
            self.release()
            raise

    def fileno(self) -> int:
        return self._lock.fileno()

    def release(self) -> None:
        self._lock.close()

    def __enter__(self) -> PortClaim:
        return self

    def __exit__(self, *_) -> None:
        self.release()


def _answers(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port``: a bind with
    ``SO_REUSEPORT`` succeeds beside another such socket of this user, so only
    trying shows a service there."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=1):
            return True
    except OSError:
        return False


class _Worker:
    """One server process, seen from the supervisor: its end of the line to
    the worker (the worker writes :data:`READY` once it listens; the worker
    watches it for the supervisor's end), and the last line it wrote to
    stderr, which is relayed to ours."""

    def __init__(self, host: str, port: int, log_level: str, claim: PortClaim, env: dict) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, host, str(port), log_level, str(theirs.fileno())],
                pass_fds=(theirs.fileno(), claim.fileno()),
                stderr=subprocess.PIPE,
                env=env,
            )
        ours.setblocking(False)
        self.line = ours
        self.ready = False
        self.last_words = ""
        self._relay = threading.Thread(target=self._relay_stderr, daemon=True)
        self._relay.start()

    def _relay_stderr(self) -> None:
        for raw in self.process.stderr:
            text = raw.decode(errors="replace")
            sys.stderr.write(text)
            if text.strip():
                self.last_words = text.strip()

    def note_ready(self) -> None:
        if not self.ready:
            with contextlib.suppress(OSError):  # nothing yet
                self.ready = self.line.recv(len(READY)) == READY

    def end(self) -> str:
        """How it ended, in words, with its last line on stderr."""
        code = self.process.returncode
        how = f"exited with status {code}"
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        return f"{how}: {self.last_words}" if self.last_words else how

    def reap(self, metrics_folder: Path) -> None:
        """Once it has exited: its last words read, its line closed, and its
        live gauges dropped from the service's metrics (its counts stay)."""
        self._relay.join(2)
        self.line.close()
        mark_process_dead(self.process.pid, str(metrics_folder))


class _Slot:
    """One of the service's places for a worker: the process in it (None
    while a replacement waits out its pause) and how many processes in a row
    failed to start there."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.failures = 0
        self.start_at = 0.0


def _supervise(host: str, port: int, workers: int, claim: PortClaim, log_level: str) -> None:
    """Keep ``workers`` server processes running until SIGINT or SIGTERM.
    Their metrics share a folder, emptied first (a killed service's files would
    add to the new counts)."""
    metrics_folder = claim.folder / "metrics"
    shutil.rmtree(metrics_folder, ignore_errors=True)
    metrics_folder.mkdir()
    env = {**os.environ, MULTIPROCESS_FOLDER: str(metrics_folder)}
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    slots = [_Slot() for _ in range(workers)]
    start = functools.partial(_Worker, host, port, log_level, claim, env)
    try:
        while not stop.is_set():
            for slot in slots:
                _tend(slot, start, metrics_folder)
            stop.wait(POLL_SECONDS)
    finally:
        running = [slot.worker for slot in slots if slot.worker is not None]
        for worker in running:
            worker.process.terminate()  # SIGTERM: uvicorn finishes what it has in hand
        deadline = time.monotonic() + STOP_SECONDS
        for worker in running:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.reap(metrics_folder)
        shutil.rmtree(metrics_folder, ignore_errors=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _tend(slot: _Slot, start: Callable[[], _Worker], metrics_folder: Path) -> None:
    """Start the slot's worker when it is due, and deal with one that exited:
    a worker that was ready is replaced at once; one that was not is retried
    after a pause that doubles each time, and stops the service (with its
    error) after :data:`START_ATTEMPTS` in a row."""
    worker = slot.worker
    if worker is None:
        if time.monotonic() >= slot.start_at:
            slot.worker = start()
        return
    worker.note_ready()
    if worker.ready:
        slot.failures = 0
    if worker.process.poll() is None:
        return
    worker.reap(metrics_folder)
    slot.worker = None
    pid, how = worker.process.pid, worker.end()
    if worker.ready:
        LOG.warning("server worker %d stopped, starting another: it %s", pid, how)
        slot.start_at = time.monotonic()
        return
    slot.failures += 1
    if slot.failures == START_ATTEMPTS:
        raise ShopsenseError(
            f"a server worker failed to start {START_ATTEMPTS} times in a row; the last one {how}"
        )
    pause = FIRST_RETRY_SECONDS * 2 ** (slot.failures - 1)
    LOG.warning("server worker %d failed to start, trying again in %g s: it %s", pid, pause, how)
    slot.start_at = time.monotonic() + pause


def _run_worker(host: str, port: int, log_level: str, line: socket.socket) -> None:
    """One worker: a uvicorn server on its own socket that tells the
    supervisor when it listens, and stops (finishing what it has in hand) once
    the supervisor's end of ``line`` closes."""
    import uvicorn

    class Worker(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            with contextlib.suppress(OSError):  # the supervisor is gone: we stop anyway
                line.send(READY)

    config = uvicorn.Config(
        APP,
        factory=True,
        log_level=log_level,
        timeout_graceful_shutdown=STOP_SECONDS,
        http=HeadLimitedHttpTools,
    )
    server = Worker(config)

    def stop_with_the_supervisor() -> None:
        """The supervisor never writes, so this returns when its end closes
        (or fails: a socket closed with our READY unread resets the line).
        A worker still loading has nothing in hand, and leaves at once."""
        with contextlib.suppress(OSError):
            line.recv(1)
        if not server.started:
            os._exit(1)
        server.should_exit = True

    threading.Thread(target=stop_with_the_supervisor, daemon=True).start()
    server.run(sockets=[_listening_socket(host, port)])


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
    return sock


if __name__ == "__main__":
    _host, _port, _log_level, _line = sys.argv[1:]
    _run_worker(_host, int(_port), _log_level, socket.socket(fileno=int(_line)))
