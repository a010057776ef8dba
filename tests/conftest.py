"""Shared fixtures: a small synthetic store, and the real datasets' location.

Real-data tests skip locally when ``../shared/datasets`` is absent, but fail
under CI (``CI`` set), where the data must be there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store

REPO = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    return Path(os.environ.get("SHOPSENSE_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def real_data():
    """``real_data("ml-100k")`` → path of that shared dataset folder."""

    def locate(name: str) -> Path:
        path = datasets_root() / name
        if not path.is_dir():
            message = f"real dataset {name} not found at {path} (set SHOPSENSE_DATASETS)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        return path

    return locate


SMALL_STORE = StoreConfig(users=400, items=250, days=30, seed=3)


@pytest.fixture(scope="session")
def raw_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw_store")
    write_store(SMALL_STORE, out)
    return out


@pytest.fixture(scope="session")
def store_dir(raw_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store")
    ingest("parquet", [raw_store], out, progress=False)
    return out


@pytest.fixture(scope="session")
def store(store_dir) -> Dataset:
    return Dataset.load(store_dir)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A throwaway redis-server on a free port (Debian's ``redis-server``; CI installs it)."""
    import shutil
    import socket
    import subprocess
    import time

    server = shutil.which("redis-server")
    if server is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def state(request, tmp_path) -> str:
    """A state store's URL, once for each backend: a SQLite file, or the
    session's Redis emptied (a module may define its own ``state``)."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url
