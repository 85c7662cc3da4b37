"""SIGTERM becomes KeyboardInterrupt while any DSQL Local runs in this process.

Python's default for SIGTERM is to die on the spot, skipping `finally`,
context managers and atexit, which would leave the backend PostgreSQL and its
files behind. A KeyboardInterrupt unwinds them (pytest too ends the session
and runs fixture teardown). A handler the application installed is left alone.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_lock = threading.Lock()
_users = [0]  # instances running; a list so that no `global` is needed


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def hold() -> None:
    """Note one more running instance; install the handler if we may."""
    with _lock:
        _users[0] += 1
        if _in_main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)


def release() -> None:
    """Note one instance less; restore the default when none is left."""
    with _lock:
        _users[0] = max(_users[0] - 1, 0)
        if (
            _users[0] == 0
            and _in_main_thread()
            and signal.getsignal(signal.SIGTERM) is _interrupt
        ):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
