"""``serve --workers N`` as real processes: the workers die with ``serve``, a
second service is refused the port, a worker that dies is replaced whatever
its age, one that cannot start stops the service with its own error, and
``/metrics`` is the whole service's whichever worker answers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shopsense.models.registry import create_model
from tests.serving_helpers import free_port, start_server

LIVE_CALLS = 20


@pytest.fixture(scope="module")
def model_dir(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("workers") / "models" / "v0001"
    create_model("pop").fit(store).save(out)
    return out.parent


def serve_command(data: Path, models: Path, state: Path, port: int, workers: int) -> list[str]:
    options = {"--data": data, "--models": models, "--state": state, "--port": port,
               "--workers": workers}  # fmt: skip
    arguments = [str(x) for pair in options.items() for x in pair]
    return [sys.executable, "-m", "shopsense", "serve", *arguments]


def listening_workers(server: subprocess.Popen, port: int, count: int) -> list[psutil.Process]:
    """The server's child processes listening on ``port``, once there are ``count``."""
    deadline = time.monotonic() + 60
    while True:
        children = psutil.Process(server.pid).children()
        found = [c for c in children if _listens(c, port)]
        if len(found) == count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} workers listen, not {count}"
        time.sleep(0.1)


def _listens(process: psutil.Process, port: int) -> bool:
    try:
        connections = process.net_connections()
    except psutil.NoSuchProcess:
        return False
    return any(c.status == "LISTEN" and c.laddr.port == port for c in connections)


def end(*processes: psutil.Process | subprocess.Popen) -> None:
    """Stop what a test started: SIGTERM, and SIGKILL for what is still there."""
    for process in processes:
        try:
            process.terminate()
            process.wait(60)
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
        except (psutil.TimeoutExpired, subprocess.TimeoutExpired):
            process.kill()


def run_to_end(command: list[str], seconds: float, **popen) -> tuple[int, str]:
    """Run a ``serve`` that should stop by itself: its exit status and stderr.
    One still running after ``seconds`` is stopped, with all it started."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)
    try:
        _, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        end(*psutil.Process(process.pid).children(recursive=True), process)
        pytest.fail(f"still serving after {seconds} s: {command}")
    return process.returncode, err.decode()


def totals(port: int) -> tuple[float, float | None]:
    """From one ``/metrics`` answer, on a new connection (so either worker may
    answer): the ``/health/live`` calls counted, and the workers running."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    samples = {
        (s.name, s.labels.get("endpoint")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    live = samples.get(("shopsense_requests_total", "/health/live"), 0)
    return live, samples.get(("shopsense_workers", None))


def test_kill_9_of_serve_takes_its_workers_down_and_frees_the_port(store_dir, model_dir, tmp_path):
    port = free_port()
    server = start_server(store_dir, model_dir, tmp_path / "state.db", port, "--workers", "2")
    workers = listening_workers(server, port, 2)
    try:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers {[w.pid for w in alive]} outlived serve"
        again = start_server(store_dir, model_dir, tmp_path / "state.db", port, "--workers", "2")
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        finally:
            end(again)
    finally:
        end(*workers)


def test_a_second_serve_on_a_port_in_use_is_refused(store_dir, model_dir, tmp_path):
    """Whatever its workers, and also where the claim file is out of its sight
    (another temporary folder): then the service answering on the port shows."""
    port = free_port()
    server = start_server(store_dir, model_dir, tmp_path / "state.db", port, "--workers", "2")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        for workers, tmpdir, error in [
            (2, None, f"another shopsense (pid {server.pid}) is already serving on port {port}"),
            (1, None, f"another shopsense (pid {server.pid}) is already serving on port {port}"),
            (2, elsewhere, f"something already answers on 127.0.0.1:{port}"),
        ]:
            env = {**os.environ, **({"TMPDIR": str(tmpdir)} if tmpdir else {})}
            command = serve_command(store_dir, model_dir, tmp_path / "state.db", port, workers)
            code, err = run_to_end(command, 60, env=env)
            assert code == 1 and f"Error: {error}" in err
    finally:
        end(server)


def test_a_killed_worker_is_replaced_and_metrics_are_the_services(store_dir, model_dir, tmp_path):
    """Killed young (the old supervisor took a death in the first minute for a
    failed start and stopped everything), the worker is replaced; every
    ``/metrics`` answer, from either worker, has the same totals, the dead
    worker's requests still counted and it no longer counted as running."""
    port = free_port()
    server = start_server(store_dir, model_dir, tmp_path / "state.db", port, "--workers", "2")
    workers = listening_workers(server, port, 2)
    try:
        for _ in range(LIVE_CALLS):  # httpx.get: a new connection each, spread over both
            assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        assert {totals(port) for _ in range(12)} == {(LIVE_CALLS, 2)}
        victim = workers[0]
        victim.kill()
        deadline = time.monotonic() + 60
        while victim.pid in {w.pid for w in listening_workers(server, port, 2)}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert server.poll() is None
        assert {totals(port) for _ in range(12)} == {(LIVE_CALLS, 2)}
    finally:
        end(server, *workers)
    assert f"server worker {victim.pid} stopped, starting another: it was killed by SIGKILL" in (
        server.stderr.read().decode()
    )


def test_a_worker_that_cannot_start_stops_the_service_with_its_error(
    store_dir, model_dir, tmp_path
):
    """A worker that fails as it starts, each time (here the dataset is of
    another schema), is retried after 1, 2 and 4 s, not in a loop; then
    ``serve`` stops with the worker's own error, not a pointer to it."""
    data = tmp_path / "data"
    shutil.copytree(store_dir, data)
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 999}))
    command = serve_command(data, model_dir, tmp_path / "state.db", free_port(), 2)
    started = time.monotonic()
    code, err = run_to_end(command, 120)
    elapsed = time.monotonic() - started
    error = err.strip().splitlines()[-1]
    assert code == 1
    assert error.startswith("Error: a server worker failed to start 4 times in a row; the last ")
    assert error.endswith(f"{data} has schema version 999; this shopsense reads 1")
    for pause in (1, 2, 4):
        assert f"failed to start, trying again in {pause} s: it exited with status 1" in err
    assert elapsed > 1 + 2 + 4
