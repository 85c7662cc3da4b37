"""TLS policy toward DSQL: always ``verify-full``, with a CA bundle that works.

psycopg-binary ships its own OpenSSL, whose default certificate store path
does not exist on most machines, so ``sslrootcert=system`` trusts nothing
there. We therefore always hand libpq an explicit bundle file.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import botocore
from psycopg import pq

from .errors import ConfigurationError

# Where the common distributions keep their bundle; checked in this order
# after OpenSSL's own idea of the default file.
_OS_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL, Amazon Linux
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, FreeBSD, Alpine
    "/usr/local/etc/openssl/cert.pem",  # Homebrew
)
_BOTOCORE_BUNDLE = Path(botocore.__file__).parent / "cacert.pem"

#: libpq supports direct TLS negotiation (one round trip less) from version 17.
DIRECT_NEGOTIATION = pq.version() >= 170000


def apply_tls(libpq: MutableMapping[str, Any]) -> None:
    """Enforce verify-full and fill in the CA bundle and negotiation mode."""
    mode = libpq.get("sslmode")
    if mode is not None and mode != "verify-full":
        raise ConfigurationError(
            f"sslmode={mode!r} is refused: DSQL connections always use"
            " sslmode=verify-full, which checks the server's certificate and host"
            " name (anything weaker lets a machine in the middle read the token);"
            " remove the sslmode setting"
        )
    libpq["sslmode"] = "verify-full"
    root = libpq.get("sslrootcert")
    if not root or root == "system":
        libpq["sslrootcert"] = default_ca_file()
    if DIRECT_NEGOTIATION and "sslnegotiation" not in libpq:
        libpq["sslnegotiation"] = "direct"


def default_ca_file() -> str:
    """Return the CA bundle used when the connection names none.

    ``PGSSLROOTCERT`` (libpq's own variable) wins, then ``SSL_CERT_FILE``,
    then the operating system's bundle, then the one shipped inside botocore
    (it holds Amazon's roots).
    """
    pg_root = os.environ.get("PGSSLROOTCERT")
    if pg_root and pg_root != "system":
        return pg_root
    env = os.environ.get("SSL_CERT_FILE")
    if env and os.path.isfile(env):
        return env
    return _system_ca_file()


@functools.cache
def _system_ca_file() -> str:
    candidates = (ssl.get_default_verify_paths().cafile, *_OS_BUNDLES)
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    return str(_BOTOCORE_BUNDLE)
