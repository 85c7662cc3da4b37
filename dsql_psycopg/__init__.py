"""Amazon Aurora DSQL for psycopg 3."""

from __future__ import annotations

from . import errors, typing
from ._async_connection import AsyncDsqlConnection
from ._async_pool import create_async_pool
from ._detect import is_occ_error
from ._endpoints import EndpointHealth, endpoint_health
from ._retry_policy import RetryPolicy
from ._retry_testing import retry_testing
from ._telemetry import set_telemetry, telemetry_enabled
from ._version import __version__
from .connection import DsqlConnection, connect
from .errors import (
    AuthenticationError,
    CommitOutcomeUnknown,
    ConfigurationError,
    ConnectRetryExhausted,
    CredentialsError,
    DsqlError,
    OCCRetryExhausted,
    UntrustedCertificateError,
)
from .pool import create_pool
from .retry import (
    AsyncRetryingTransaction,
    AsyncTransactionAttempt,
    RetryingTransaction,
    TransactionAttempt,
    retry_on_occ,
    run_transaction,
    transaction,
)
from .typing import RetryEvent, TokenProvider

__all__ = [
    "AsyncDsqlConnection",
    "AsyncRetryingTransaction",
    "AsyncTransactionAttempt",
    "AuthenticationError",
    "CommitOutcomeUnknown",
    "ConfigurationError",
    "ConnectRetryExhausted",
    "CredentialsError",
    "DsqlConnection",
    "DsqlError",
    "EndpointHealth",
    "OCCRetryExhausted",
    "RetryEvent",
    "RetryPolicy",
    "RetryingTransaction",
    "TokenProvider",
    "TransactionAttempt",
    "UntrustedCertificateError",
    "__version__",
    "connect",
    "create_async_pool",
    "create_pool",
    "endpoint_health",
    "errors",
    "is_occ_error",
    "retry_on_occ",
    "retry_testing",
    "run_transaction",
    "set_telemetry",
    "telemetry_enabled",
    "transaction",
    "typing",
]
