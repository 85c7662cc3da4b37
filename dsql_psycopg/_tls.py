"""TLS policy toward DSQL: always ``verify-full``, with a trust file that fits.

psycopg-binary ships its own OpenSSL, whose default certificate store path
does not exist on most machines, so ``sslrootcert=system`` trusts nothing
there. We therefore always hand libpq an explicit file of trusted roots.

For a DSQL endpoint name that file holds Amazon's roots only: DSQL's
certificates chain to them, any other CA could only vouch for an impostor,
and libpq parses the whole file on every connect (five roots cost a fraction
of the ~145 of an OS bundle).
"""

from __future__ import annotations

import functools
import inspect
import os
import ssl
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

import botocore
import psycopg
from psycopg import pq

from . import _config as config
from .errors import ConfigurationError, UntrustedCertificateError

#: Amazon Root CA 1-4 and the Starfield Services root that cross-signs them,
#: shipped with the package: read by libpq, never written.
AMAZON_ROOTS = str(Path(__file__).with_name("amazon-roots.pem"))

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


class Trust(NamedTuple):
    """The file of trusted roots a connection uses, and why."""

    path: str
    #: "sslrootcert", "PGSSLROOTCERT", "Amazon roots", "SSL_CERT_FILE",
    #: "OS bundle" or "botocore bundle".
    source: str


def apply_tls(libpq: MutableMapping[str, Any]) -> Trust:
    """Enforce verify-full, fill in the trust file and negotiation mode."""
    mode = libpq.get("sslmode")
    if mode is not None and mode != "verify-full":
        raise ConfigurationError(
            f"sslmode={mode!r} is refused: DSQL connections always use"
            " sslmode=verify-full, which checks the server's certificate and host"
            " name (anything weaker lets a machine in the middle read the token);"
            " remove the sslmode setting"
        )
    libpq["sslmode"] = "verify-full"
    trust = resolve_trust(str(libpq.get("host") or ""), libpq.get("sslrootcert"))
    libpq["sslrootcert"] = trust.path
    if DIRECT_NEGOTIATION and "sslnegotiation" not in libpq:
        libpq["sslnegotiation"] = "direct"
    return trust


def resolve_trust(host: str, given: str | None) -> Trust:
    """Return the trust file for a connection to `!host`.

    The user's value wins (``sslrootcert``, then ``PGSSLROOTCERT``); for a
    DSQL endpoint name, Amazon's roots; otherwise, and for an explicit
    ``system``, ``SSL_CERT_FILE``, the OS bundle, then botocore's bundle.
    """
    if given and given != "system":
        return Trust(given, "sslrootcert")
    env = os.environ.get("PGSSLROOTCERT")
    if env and env != "system":
        return Trust(env, "PGSSLROOTCERT")
    if not given and not env and config.is_dsql_host(host):
        return Trust(AMAZON_ROOTS, "Amazon roots")
    cert_file = os.environ.get("SSL_CERT_FILE")
    if cert_file and os.path.isfile(cert_file):
        return Trust(cert_file, "SSL_CERT_FILE")
    return _system_trust()


@functools.cache
def _system_trust() -> Trust:
    candidates = (ssl.get_default_verify_paths().cafile, *_OS_BUNDLES)
    for path in candidates:
        if path and os.path.isfile(path):
            return Trust(path, "OS bundle")
    return Trust(str(_BOTOCORE_BUNDLE), "botocore bundle")


def count_roots(path: str) -> int:
    """Count the PEM certificates in `!path` (0 if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read().count(b"-----BEGIN CERTIFICATE-----")
    except OSError:
        return 0


# The keywords psycopg's connect() takes for itself; the rest reach libpq.
_PSYCOPG_KEYWORDS = frozenset(
    name
    for name, p in inspect.signature(psycopg.Connection.connect).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def untrusted_certificate(
    ex: psycopg.OperationalError, conninfo: str, kwargs: Mapping[str, Any]
) -> UntrustedCertificateError:
    """Explain libpq's "certificate verify failed" for the connection it ended.

    The connection's parameters are worked out again (from the parse cache):
    only a failed connect pays for it.
    """
    try:
        params = config.parse(
            conninfo, **{k: v for k, v in kwargs.items() if k not in _PSYCOPG_KEYWORDS}
        )
        host = params.host
        trust = resolve_trust(host, params.libpq.get("sslrootcert"))
    except ConfigurationError:
        host, trust = "the server", None
    # libpq's last line names the server and the TLS error; it holds no secret.
    said = (str(ex).strip().splitlines() or ["no detail"])[-1]
    if trust is not None and trust.source == "Amazon roots":
        return UntrustedCertificateError(
            f"the certificate presented for {host} does not chain to Amazon's root"
            f" CAs ({trust.path}), the only roots trusted for a DSQL endpoint name"
            f" when no sslrootcert is given [{said}]. Every DSQL endpoint's"
            " certificate chains to them, so something else answered: if a"
            " TLS-inspecting proxy sits in between on purpose, pass its CA"
            " certificate as sslrootcert=/path/to/proxy-ca.pem (or set"
            " PGSSLROOTCERT; SSL_CERT_FILE is not consulted for DSQL names);"
            " otherwise check hostaddr and the network path"
        )
    whose = "the trusted roots" if trust is None else f"a root in {trust.path}"
    origin = "" if trust is None else f" (from {trust.source})"
    return UntrustedCertificateError(
        f"the certificate presented for {host} does not chain to {whose}{origin}"
        f" [{said}]: pass the CA certificate that signed the server's certificate"
        " as sslrootcert=/path/to/ca.pem (or set PGSSLROOTCERT)"
    )
