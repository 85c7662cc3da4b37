"""Types to annotate code that uses dsql_psycopg: hooks, events, options.

Import them from here (``from dsql_psycopg.typing import RetryEvent``); the
modules that define their behaviour are private.
"""

from __future__ import annotations

from ._retry_policy import RetryPolicy
from ._types import RetryEvent, RetryHook, RetryOptions, RetryReason, TokenProvider

__all__ = [
    "RetryEvent",
    "RetryHook",
    "RetryOptions",
    "RetryPolicy",
    "RetryReason",
    "TokenProvider",
]
