"""Schema conflicts (OC001): a transaction must not outlive a schema change.

In Aurora DSQL a transaction works against the catalog as it was when it
began; once another transaction has committed DDL (or GRANT/REVOKE), its next
statement fails with 40001 ``(OC001)``. `SchemaClock` counts committed schema
changes for the whole endpoint; each connection's `SchemaWatch` notes the
count its transaction began with and sees its own DDL commit.
"""

from __future__ import annotations

import threading

OC001_MESSAGE = "schema has been updated by another transaction, please retry: (OC001)"
_DDL_VERBS = frozenset({"CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "COMMENT"})


class SchemaClock:
    """How many schema changes have been committed through the endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.version = 0

    def tick(self) -> None:
        with self._lock:
            self.version += 1


class SchemaWatch:
    """One connection's view: its transaction's catalog version and its DDL."""

    def __init__(self, clock: SchemaClock) -> None:
        self._clock = clock
        self._began_at = clock.version
        self._ddl = False
        self._failed = False
        self._last_tag = ""

    def begin(self) -> None:
        """A transaction (explicit or implicit) starts: pin the catalog."""
        self._began_at = self._clock.version

    def stale(self) -> bool:
        return self._clock.version != self._began_at

    def command_done(self, tag: str) -> None:
        self._last_tag = tag
        if tag.split(" ", 1)[0] in _DDL_VERBS:
            self._ddl = True

    def error(self) -> None:
        self._failed = True

    def idle(self) -> None:
        """The transaction ended: publish its schema change if it committed."""
        if self._ddl and not self._failed and self._last_tag != "ROLLBACK":
            self._clock.tick()
        self._ddl = self._failed = False
