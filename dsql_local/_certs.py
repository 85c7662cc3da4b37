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


def make_certificates(directory: Path, *regions: str) -> tuple[CertFiles, ...]:
    """Write a CA and, for each region, a certificate for `*.dsql.<region>.on.aws`.

    Each server certificate also names ``localhost`` and ``127.0.0.1``.
    """
    if not regions:
        raise ValueError("make_certificates needs at least one region")
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("DSQL Local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
    ca_file = directory / "root.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return tuple(
        _server_certificate(
            directory,
            region,
            ca_file=ca_file,
            ca_key=ca_key,
            ca_name=ca_name,
            valid=(not_before, not_after),
        )
        for region in regions
    )


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
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(files.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return files
