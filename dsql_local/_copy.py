"""COPY FROM STDIN inside a hidden transaction: its data must not wait.

Other client data waits while a hidden transaction is in flight (see
`_hidden`), but the data of a ``COPY FROM STDIN`` it runs, from the
backend's CopyInResponse to the client's CopyDone or CopyFail, must pass,
or the COPY would never end. A COPY is never wrapped when sent by Parse:
the backend skips the Sync sent along with it, and libpq sends another one
after the data, which the relay would hold.
"""

from __future__ import annotations

import re

_COPY_RE = re.compile(r"\s*copy\b", re.IGNORECASE)


def is_copy(sql: str) -> bool:
    """Whether `sql` is a COPY statement."""
    return _COPY_RE.match(sql) is not None


class CopyIn:
    """Whether a COPY FROM STDIN in a hidden transaction takes client data."""

    __slots__ = ("streaming",)

    def __init__(self) -> None:
        self.streaming = False

    def started(self) -> None:
        """The backend's CopyInResponse: the client's data passes."""
        self.streaming = True

    def ended(self) -> None:
        """CopyDone, CopyFail, or the unit's end (a failed COPY ends early)."""
        self.streaming = False
