"""Start a strict DSQL Local and replay the recorded corpus against it."""

from __future__ import annotations

from typing import Any

import boto3
import psycopg

from dsql_local import DsqlLocal

from .replay import CaseResult, replay


def connect_to(local: DsqlLocal) -> psycopg.Connection[Any]:
    """An autocommit connection as admin, as the recorder used."""
    client = boto3.client("dsql", region_name=local.region)
    token = client.generate_db_connect_admin_auth_token(local.host, local.region)
    return psycopg.connect(
        **local.connect_kwargs(),
        password=token,
        sslmode="verify-full",
        autocommit=True,
    )


def replay_on_dsql_local() -> list[CaseResult]:
    """Replay every case on a fresh strict DSQL Local."""
    with DsqlLocal() as local:
        return list(replay(lambda: connect_to(local)))
