"""Amazon Aurora DSQL for psycopg 3."""

from __future__ import annotations

from . import errors
from ._version import __version__
from .config import TokenProvider
from .connection import DsqlConnection, connect
from .errors import (
    AuthenticationError,
    CommitOutcomeUnknown,
    ConfigurationError,
    CredentialsError,
    DsqlError,
    OCCRetryExhausted,
)

__all__ = [
    "AuthenticationError",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "CredentialsError",
    "DsqlConnection",
    "DsqlError",
    "OCCRetryExhausted",
    "TokenProvider",
    "__version__",
    "connect",
    "errors",
]
