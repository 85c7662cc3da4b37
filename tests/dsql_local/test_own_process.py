"""DSQL Local with its endpoints in a process of their own (``own_process=True``).

The controls (faults, outages, latency) run in both placements in
`test_faults.py`; here, what is particular to the child process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from dsql_local import DsqlLocal, DsqlLocalError, Refusal, Session
from tests.dsql_local.helpers import open_connection

_CHILD = b"dsql_local._process"


def _children() -> list[int]:
    """This process's children running DSQL Local's endpoints."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and _CHILD in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_the_endpoints_run_in_a_child_that_ends_with_stop() -> None:
    before = set(_children())
    local = DsqlLocal(own_process=True, peer_region="us-east-2").start()
    try:
        (child,) = set(_children()) - before
        for region in local.regions:
            with open_connection(local.endpoint(region)) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
                # Strict mode, as in this process.
                with pytest.raises(psycopg.errors.FeatureNotSupported):
                    conn.execute("truncate own_t")
    finally:
        local.stop()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists():
        assert time.monotonic() < deadline, "the endpoint process is still running"
        time.sleep(0.05)
    with pytest.raises(DsqlLocalError, match="not running"):
        _ = local.url


def test_not_strict_in_a_child() -> None:
    with (
        DsqlLocal(strict=False, own_process=True) as local,
        open_connection(local) as conn,
    ):
        conn.execute("create table own_lax (id serial primary key)")


class _Policy:
    bootstrap_sql = ()

    def check_startup(self, parameters: object) -> None:
        return None

    def check_statement(self, sql: str, session: Session) -> Refusal | None:
        return None

    def statement_done(self, command_tag: str, session: Session) -> None:
        return None

    def check_commit(self, session: Session) -> None:
        return None


def test_a_policy_object_stays_in_this_process() -> None:
    with pytest.raises(DsqlLocalError, match="own_process=False with policy="):
        DsqlLocal(own_process=True, policy=_Policy())


def test_a_control_error_is_the_projects() -> None:
    with DsqlLocal(own_process=True) as local:
        with pytest.raises(DsqlLocalError, match="count must be zero or more"):
            local.inject_conflicts(-1)
        # Checked in the child: its error comes back as it is.
        with pytest.raises(DsqlLocalError, match="reason must be one of"):
            local.refuse_connections("no such reason", count=1)  # type: ignore[arg-type]
