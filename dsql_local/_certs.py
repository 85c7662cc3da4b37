"""Per-instance certificates: a private CA and the server certificates it signs.

One CA signs a certificate for each region served, so that one
``sslrootcert`` verifies every endpoint of a multi-region cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dsql_psycopg._naming import endpoint_host


@dataclass(frozen=True)
class CertFiles:
    """The CA's certificate and one region's server certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DSQL Local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


#: A kept CA is made again when it would expire within this time.
_CA_MARGIN = datetime.timedelta(days=1)


def make_certificates(
    directory: Path, *regions: str, keep_ca: bool = False
) -> tuple[CertFiles, ...]:
    """Write a CA and, for each region, a certificate for `*.dsql.<region>.on.aws`.

    Each server certificate also names ``localhost`` and ``127.0.0.1``. With
    `keep_ca`, the CA's key is kept in `directory` too (``root.key``, mode
    0600), and a CA found there is used again, so that a restart keeps the
    same ``root.crt``, path and content, and what trusts it.
    """
    if not regions:
        raise ValueError("make_certificates needs at least one region")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_file, ca_key_file = directory / "root.crt", directory / "root.key"
    kept = _kept_ca(ca_file, ca_key_file, now) if keep_ca else None
    if kept is None:
        ca_cert, ca_key = _new_ca(now)
        _write(ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))
        if keep_ca:
            _write(ca_key_file, _key_pem(ca_key), private=True)
    else:
        ca_cert, ca_key = kept
    not_before = now - datetime.timedelta(hours=1)
    not_after = min(
        now + datetime.timedelta(days=30), ca_cert.not_valid_after_utc - _CA_MARGIN
    )
    return tuple(
        _server_certificate(
            directory,
            region,
            ca_file=ca_file,
            ca_key=ca_key,
            ca_name=ca_cert.subject,
            valid=(not_before, not_after),
        )
        for region in regions
    )


def _new_ca(
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("DSQL Local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca_cert, ca_key


def _kept_ca(
    ca_file: Path, key_file: Path, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """Return the CA kept in the directory, if it is whole and not expiring."""
    try:
        cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - _CA_MARGIN <= now:
        return None
    return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace `path` whole (a reader never sees half a file); keys are 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if not private:
        os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _server_certificate(
    directory: Path,
    region: str,
    *,
    ca_file: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    valid: tuple[datetime.datetime, datetime.datetime],
) -> CertFiles:
    """Write `region`'s server certificate, signed by the CA, and its key."""
    not_before, not_after = valid
    key = ec.generate_private_key(ec.SECP256R1())
    wildcard = endpoint_host("*", region)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(wildcard))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(wildcard),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = CertFiles(
        ca_file=ca_file,
        cert_file=directory / f"{region}.crt",
        key_file=directory / f"{region}.key",
    )
    _write(files.cert_file, cert.public_bytes(serialization.Encoding.PEM))
    _write(files.key_file, _key_pem(key), private=True)
    return files
