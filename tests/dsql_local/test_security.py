"""DSQL Local against a hostile or careless client: it keeps serving, safely."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import boto3
import psycopg
import pytest

from dsql_local import DsqlLocal
from dsql_local import _protocol as pq
from tests.dsql_local.helpers import open_connection

_GSSENC_REQUEST = pq.INT32.pack(8) + pq.INT32.pack(pq.GSSENC_REQUEST)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="the backend changes user and group only when started as root on Linux",
)
def test_backend_keeps_no_group_of_root(dsql_local: DsqlLocal) -> None:
    pid = dsql_local._backend.pid
    assert pid is not None
    status = _status(pid)
    assert status["Uid"].split()[0] != "0"
    # Real, effective, saved and filesystem group ids; then the others.
    assert set(status["Gid"].split()) != {"0"}
    assert "0" not in status["Gid"].split()
    assert "0" not in status["Groups"].split()


def _closed(sock: socket.socket) -> bool:
    """Whether the peer has closed `sock` (after waiting up to a second)."""
    sock.settimeout(1.0)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_slow_startup_is_closed_at_the_deadline(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dsql_local._running(), "startup_timeout", 2.0)
    with socket.create_connection(("127.0.0.1", dsql_local.port), timeout=10) as sock:
        # Each byte comes well within any per-read timeout; every request is
        # answered, so the client seems to make progress.
        give_up = time.monotonic() + 60
        closed = False
        while not closed and time.monotonic() < give_up:
            try:
                for byte in _GSSENC_REQUEST:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                closed = True
                break
            closed = _closed(sock)  # else it has answered "N"
        assert closed, "the endpoint kept a dripping startup open for 60 s"
    # Others are served as ever.
    with open_connection(dsql_local) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


_SERVE_WITH_FEW_DESCRIPTORS = """
import json, logging, os, resource, sys
from dsql_local import DsqlLocal
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
with DsqlLocal(strict=False) as local:
    open_now = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 16, hard))
    print(json.dumps({"port": local.port, "kwargs": local.connect_kwargs()}))
    sys.stdout.flush()
    sys.stdin.read()
"""


def _lines_to(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc"
)
def test_accept_survives_running_out_of_descriptors() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _SERVE_WITH_FEW_DESCRIPTORS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        stderr: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_lines_to, args=(proc.stderr, stderr))
        reader.start()
        try:
            _flood_then_connect(json.loads(proc.stdout.readline()), stderr)
        finally:
            proc.kill()
            proc.wait()
            reader.join()


def _flood_then_connect(info: dict[str, Any], stderr: queue.Queue[str]) -> None:
    flood: list[socket.socket] = []
    log = ""
    give_up = time.monotonic() + 60
    try:
        # Connect until the endpoint says it has run out of descriptors.
        while "cannot accept" not in log and time.monotonic() < give_up:
            flood.append(socket.create_connection(("127.0.0.1", info["port"])))
            with contextlib.suppress(queue.Empty):
                log += stderr.get(timeout=0.05 if len(flood) < 64 else 1)
        assert "cannot accept" in log, log
    finally:
        for sock in flood:
            sock.close()
    # Served again, with time to spare however loaded the machine.
    kwargs = info["kwargs"]
    token = boto3.client(
        "dsql", region_name="us-east-1"
    ).generate_db_connect_admin_auth_token(kwargs["host"], "us-east-1")
    with psycopg.connect(
        **kwargs, password=token, sslmode="verify-full", connect_timeout=30
    ) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
