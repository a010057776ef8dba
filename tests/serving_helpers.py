"""Running the service as a real process, for the tests that need one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> None:
    """Skip without Debian's chromium, except in CI, where its absence fails."""
    if not shutil.which(CHROMIUM):
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    store_dir: Path, models: Path, state: Path, port: int, *extra: str
) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "shopsense", "serve", "--data", str(store_dir), "--models",
         str(models), "--state", str(state), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not become ready in 60 s")
