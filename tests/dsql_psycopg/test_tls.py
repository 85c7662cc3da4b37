"""Trust: Amazon's roots only for DSQL endpoint names, the user's file always wins."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import boto3
import botocore
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg._tls import AMAZON_ROOTS, count_roots, resolve_trust

DSQL_NAME = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
OS_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# SHA-256 of each root's SubjectPublicKeyInfo, as Amazon Trust Services
# publishes them (https://www.amazontrust.com/repository/, "Root CAs").
PUBLISHED_SPKI_SHA256 = {
    "Amazon Root CA 1": (
        "fbe3018031f9586bcbf41727e417b7d1c45c2f47f93be372a17b96b50757d5a2"
    ),
    "Amazon Root CA 2": (
        "7f4296fc5b6a4e3b35d3c369623e364ab1af381d8fa7121533c9d6c633ea2461"
    ),
    "Amazon Root CA 3": (
        "36abc32656acfc645c61b71613c4bf21c787f5cabbee48348d58597803d7abc9"
    ),
    "Amazon Root CA 4": (
        "f7ecded5c66047d28ed6466b543c40e0743abe81d109254dcf845d4c2c7853c5"
    ),
    "Starfield Services Root Certificate Authority - G2": (
        "2b071c59a0a0ae76b0eadb2bad23bad4580b69c3601b630c2eaf0613afa83f92"
    ),
}
# SHA-256 fingerprints of the self-signed certificates themselves, as listed
# for these roots in the Mozilla root store (CCADB) that OS bundles derive from.
PUBLISHED_CERT_SHA256 = {
    "Amazon Root CA 1": (
        "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
    ),
    "Amazon Root CA 2": (
        "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4"
    ),
    "Amazon Root CA 3": (
        "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4"
    ),
    "Amazon Root CA 4": (
        "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092"
    ),
    "Starfield Services Root Certificate Authority - G2": (
        "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5"
    ),
}


def certificates(path: str | Path) -> dict[str, x509.Certificate]:
    """The certificates of a PEM bundle by common name."""
    found = {}
    with warnings.catch_warnings():
        # Some other CAs in OS bundles have serial numbers cryptography frowns on.
        warnings.simplefilter("ignore")
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    for cert in certs:
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if names:
            found[str(names[0].value)] = cert
    return found


def spki_sha256(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def cert_sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def test_default_trust_file_holds_exactly_amazon_roots() -> None:
    roots = certificates(AMAZON_ROOTS)
    assert count_roots(AMAZON_ROOTS) == len(roots) == 5
    assert {name: spki_sha256(c) for name, c in roots.items()} == PUBLISHED_SPKI_SHA256
    assert {name: cert_sha256(c) for name, c in roots.items()} == PUBLISHED_CERT_SHA256
    for cert in roots.values():
        assert cert.subject == cert.issuer  # self-signed roots, no intermediates


@pytest.mark.parametrize(
    "bundle",
    [OS_BUNDLE, Path(botocore.__file__).parent / "cacert.pem"],
    ids=["os", "botocore"],
)
def test_other_bundles_hold_the_same_roots(bundle: Path) -> None:
    if not bundle.is_file():
        pytest.skip(f"no {bundle} on this machine")
    theirs = certificates(bundle)
    ours = certificates(AMAZON_ROOTS)
    shared = ours.keys() & theirs.keys()
    assert shared, f"{bundle} holds none of Amazon's roots"
    for name in shared:
        assert cert_sha256(theirs[name]) == cert_sha256(ours[name]), name


def test_trust_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    # a DSQL endpoint name: Amazon's roots, SSL_CERT_FILE notwithstanding
    for host in (DSQL_NAME, DSQL_NAME.replace(".dsql.", ".dsql-fips.").upper()):
        assert resolve_trust(host, None) == (AMAZON_ROOTS, "Amazon roots")
    # other hosts: SSL_CERT_FILE, as before
    for host in ("localhost", "proxy.example.com", "dsql.us-east-1.on.aws.evil"):
        assert resolve_trust(host, None) == (str(bundle), "SSL_CERT_FILE")
    # the user's value always wins, and an explicit "system" means the system's
    assert resolve_trust(DSQL_NAME, "/mine.pem") == ("/mine.pem", "sslrootcert")
    assert resolve_trust(DSQL_NAME, "system") == (str(bundle), "SSL_CERT_FILE")
    monkeypatch.setenv("PGSSLROOTCERT", "/env.pem")
    assert resolve_trust(DSQL_NAME, None) == ("/env.pem", "PGSSLROOTCERT")
    assert resolve_trust(DSQL_NAME, "/mine.pem") == ("/mine.pem", "sslrootcert")
    monkeypatch.setenv("PGSSLROOTCERT", "system")
    assert resolve_trust(DSQL_NAME, None) == (str(bundle), "SSL_CERT_FILE")
    monkeypatch.delenv("PGSSLROOTCERT")
    monkeypatch.delenv("SSL_CERT_FILE")
    system = resolve_trust("localhost", None)
    assert system.source in ("OS bundle", "botocore bundle")
    assert os.path.isfile(system.path)


def _no_root(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "sslrootcert"}


@pytest.fixture
def foreign_bundle(dsql_local: DsqlLocal, tmp_path: Path) -> Path:
    """An OS-style bundle that also holds the CA of DSQL Local's certificate."""
    bundle = tmp_path / "corporate-bundle.pem"
    system = OS_BUNDLE.read_bytes() if OS_BUNDLE.is_file() else b""
    bundle.write_bytes(system + Path(dsql_local.ca_file).read_bytes())
    return bundle


def test_foreign_ca_refused_for_dsql_name(
    dsql_local: DsqlLocal, foreign_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(foreign_bundle))
    tokens: list[str] = []
    client = boto3.client("dsql", region_name=dsql_local.region)

    def provider(*, host: str, region: str, user: str, expires_in: int) -> str:
        tokens.append(client.generate_db_connect_admin_auth_token(host, region))
        return tokens[-1]

    with pytest.raises(dsql.UntrustedCertificateError) as info:
        dsql.connect(**_no_root(dsql_local.connect_kwargs()), token_provider=provider)
    assert isinstance(info.value, psycopg.OperationalError)
    message = str(info.value)
    assert dsql_local.host in message
    assert AMAZON_ROOTS in message
    assert "certificate verify failed" in message
    assert "sslrootcert=" in message
    assert "proxy" in message
    assert "SSL_CERT_FILE is not consulted" in message
    signature = tokens[0].rpartition("X-Amz-Signature=")[2]
    assert signature not in message
    assert tokens[0] not in message

    # the same through a URL
    url = dsql_local.url.split("&sslrootcert=")[0]
    with pytest.raises(dsql.UntrustedCertificateError, match="Amazon's root CAs"):
        dsql.connect(url)


def test_sslrootcert_naming_the_ca_connects(
    dsql_local: DsqlLocal, foreign_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(foreign_bundle))
    with dsql.connect(
        **_no_root(dsql_local.connect_kwargs()), sslrootcert=dsql_local.ca_file
    ) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    monkeypatch.setenv("PGSSLROOTCERT", dsql_local.ca_file)
    with dsql.connect(**_no_root(dsql_local.connect_kwargs())) as conn:
        assert conn.pgconn.ssl_in_use
    # an explicit "system" trusts what the machine trusts, SSL_CERT_FILE included
    monkeypatch.delenv("PGSSLROOTCERT")
    with dsql.connect(**_no_root(dsql_local.connect_kwargs()), sslrootcert="system"):
        pass


def test_other_hosts_keep_their_trust(
    dsql_local: DsqlLocal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a trust file that does not hold DSQL Local's CA, named by SSL_CERT_FILE
    monkeypatch.setenv("SSL_CERT_FILE", AMAZON_ROOTS)
    kwargs = _no_root(dsql_local.connect_kwargs()) | {
        "host": "localhost",
        "region": dsql_local.region,
    }
    with pytest.raises(dsql.UntrustedCertificateError) as info:
        dsql.connect(**kwargs)
    message = str(info.value)
    assert f"a root in {AMAZON_ROOTS} (from SSL_CERT_FILE)" in message
    assert "sslrootcert=" in message


def test_nothing_written_per_connect(
    dsql_local: DsqlLocal, foreign_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(foreign_bundle))
    before = os.stat(AMAZON_ROOTS)
    kwargs = _no_root(dsql_local.connect_kwargs())
    for _ in range(100):
        with pytest.raises(dsql.UntrustedCertificateError):
            dsql.connect(**kwargs)
    after = os.stat(AMAZON_ROOTS)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
