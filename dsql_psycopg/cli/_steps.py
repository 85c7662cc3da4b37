"""What every diagnostic step shares: its result, its failure and its state."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dsql_psycopg._config import DsqlParams

if TYPE_CHECKING:
    import boto3

    from dsql_psycopg.connection import DsqlConnection


class StepFailed(Exception):
    """A step failed: what happened, and the likely fix."""

    def __init__(self, detail: str, hint: str, **info: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint
        self.info = info


@dataclass
class Outcome:
    """What a step that passed found."""

    detail: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class State:
    """What earlier steps hand to later ones."""

    args: argparse.Namespace
    timeout: float = 10.0
    endpoint: int = 0
    """Which of the target's endpoints is checked (``host=a,b``: 0 or 1)."""
    params: DsqlParams | None = None
    libpq: dict[str, Any] = field(default_factory=dict)
    addresses: list[tuple[socket.AddressFamily, Any]] = field(default_factory=list)
    sock: socket.socket | None = None
    session: boto3.Session | None = None
    region: str | None = None
    token: str | None = field(default=None, repr=False)
    conn: DsqlConnection[Any] | None = None

    def close(self) -> None:
        """Release what the steps left open."""
        if self.sock is not None:
            self.sock.close()
        if self.conn is not None:
            self.conn.close()

    def need_params(self) -> DsqlParams:
        assert self.params is not None, "the configuration step runs first"
        return self.params


Step = Callable[[State], Outcome]
