"""Network steps of ``check``: DNS, TCP and TLS, done by hand to name each failure.

The TLS step speaks PostgreSQL's opening itself (an SSLRequest, or direct TLS
with ALPN ``postgresql``) and verifies the server's certificate the way libpq
does with ``sslmode=verify-full``: chain against the CA file, then host name.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import struct
from typing import Any

from dsql_psycopg._naming import ENDPOINT_FORM

from ._steps import Outcome, State, StepFailed

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_ALPN = "postgresql"

# OpenSSL verification codes (X509_V_ERR_*) grouped by what fixes them.
_UNTRUSTED = {2, 18, 19, 20, 21}
_EXPIRED = {9, 10}
_NAME_MISMATCH = {62, 64}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _port(state: State) -> int:
    return int(state.libpq["port"])


def dns(state: State) -> Outcome:
    """Resolve the host, unless ``hostaddr`` says where to go."""
    host, port = state.need_params().host, _port(state)
    hostaddr = state.libpq.get("hostaddr")
    target = hostaddr or host
    try:
        infos = socket.getaddrinfo(target, port, type=socket.SOCK_STREAM)
    except socket.gaierror as ex:
        if hostaddr:
            raise StepFailed(
                f"hostaddr={hostaddr!r} is not an IP address ({ex.strerror})",
                "hostaddr takes a numeric address; put the endpoint name in host=",
            ) from None
        hint = (
            f"check the host name: a DSQL endpoint is {ENDPOINT_FORM}"
            " (check the cluster id and the region), and that this machine's DNS"
            " resolves public names"
        )
        raise StepFailed(f"cannot resolve {host}: {ex.strerror}", hint) from None
    state.addresses = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
    found = sorted({str(sockaddr[0]) for _, sockaddr in state.addresses})
    if hostaddr:
        return Outcome(
            f"not looked up: hostaddr={hostaddr} given ({host} is still used for"
            " SNI, the certificate check and the token)",
            {"addresses": found, "hostaddr": hostaddr},
        )
    return Outcome(f"{host} -> {', '.join(found)}", {"addresses": found})


def tcp(state: State) -> Outcome:
    """Open a TCP connection to the first address that answers."""
    port = _port(state)
    errors: list[tuple[str, OSError]] = []
    for family, sockaddr in state.addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(state.timeout)
        try:
            sock.connect(sockaddr)
        except OSError as ex:
            sock.close()
            errors.append((str(sockaddr[0]), ex))
            continue
        state.sock = sock
        return Outcome(
            f"connected to {sockaddr[0]} port {port}",
            {"address": sockaddr[0], "port": port},
        )
    raise _tcp_failure(errors, port)


def _tcp_failure(errors: list[tuple[str, OSError]], port: int) -> StepFailed:
    tried = "; ".join(f"{addr}: {_describe(ex)}" for addr, ex in errors)
    if any(isinstance(ex, ConnectionRefusedError) for _, ex in errors):
        hint = (
            f"nothing accepts connections on port {port} there: DSQL endpoints"
            " listen on 5432, so check port= in the target"
        )
    elif any(isinstance(ex, TimeoutError) for _, ex in errors):
        hint = (
            f"no answer on port {port}: a firewall, security group or proxy is"
            " in the way, or the address is wrong (outbound TCP 5432 must be open)"
        )
    else:
        hint = "check this machine's network connection and routes"
    return StepFailed(f"cannot connect on port {port} ({tried})", hint)


def _describe(ex: OSError) -> str:
    if isinstance(ex, TimeoutError):
        return "timed out"
    if ex.errno is not None:
        return errno.errorcode.get(ex.errno, str(ex.errno)) + f" {ex.strerror}"
    return str(ex)


def tls(state: State) -> Outcome:
    """Negotiate TLS as libpq would and verify the certificate like verify-full."""
    sock, state.sock = state.sock, None
    assert sock is not None, "the TCP step runs first"
    # The probe ends here: it never logs in, so it holds no server slot longer.
    with sock:
        return _tls(sock, state)


def _tls(sock: socket.socket, state: State) -> Outcome:
    host = state.need_params().host
    if str(state.libpq.get("sslsni", "1")) == "0":
        raise StepFailed("sslsni=0 turns SNI off", "remove sslsni=0: DSQL requires SNI")
    ca_file = str(state.libpq["sslrootcert"])
    direct = state.libpq.get("sslnegotiation") == "direct"
    context = _context(ca_file, direct)
    if not direct:
        _ssl_request(sock)
    try:
        conn = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as ex:
        raise _verify_failure(ex, ca_file, host) from None
    except (ssl.SSLError, OSError) as ex:
        raise _handshake_failure(ex, direct) from None
    with conn:
        return _verified(conn, host, ca_file, direct)


def _verified(conn: ssl.SSLSocket, host: str, ca_file: str, direct: bool) -> Outcome:
    if direct and conn.selected_alpn_protocol() != _ALPN:
        raise StepFailed(
            f"the server did not agree to ALPN {_ALPN!r} in direct TLS",
            "this server does not support direct TLS negotiation: add"
            " sslnegotiation=postgres to the target",
        )
    cert: dict[str, Any] = conn.getpeercert() or {}
    info = {
        "negotiation": "direct" if direct else "postgres",
        "alpn": conn.selected_alpn_protocol(),
        "protocol": conn.version(),
        "ca_file": ca_file,
        "subject": _name(cert.get("subject", ())),
        "issuer": _name(cert.get("issuer", ())),
        "names": [value for _, value in cert.get("subjectAltName", ())],
        "not_after": cert.get("notAfter"),
    }
    if _is_ip(host):
        raise StepFailed(
            f"host {host} is an IP address: no SNI is sent and the token would be"
            " signed for the address",
            _endpoint_hint(host),
            **info,
        )
    negotiation = "direct" if direct else "postgres (SSLRequest)"
    return Outcome(
        f"{negotiation}, {info['protocol']}, chain verified against {ca_file}"
        f" (issuer {info['issuer']}), certificate matches {host}",
        info,
    )


def _context(ca_file: str, direct: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=ca_file)
    except FileNotFoundError:
        raise StepFailed(
            f"CA file {ca_file} does not exist",
            "point sslrootcert= at an existing bundle, or drop it to trust"
            " Amazon's roots (for a DSQL endpoint name)",
        ) from None
    except (ssl.SSLError, OSError) as ex:
        raise StepFailed(
            f"CA file {ca_file} cannot be used: {ex}",
            "sslrootcert= must name a readable file of PEM certificates",
        ) from None
    if direct:
        context.set_alpn_protocols([_ALPN])
    return context


def _ssl_request(sock: socket.socket) -> None:
    try:
        sock.sendall(_SSL_REQUEST)
        answer = sock.recv(1)
    except OSError as ex:
        raise StepFailed(
            f"the server dropped the connection after the SSLRequest ({ex})",
            "check that the port belongs to a PostgreSQL server",
        ) from None
    if answer == b"N":
        raise StepFailed(
            "the server refused TLS (answered N to the SSLRequest)",
            "DSQL always accepts TLS: this port belongs to another PostgreSQL"
            " server; check host, hostaddr and port",
        )
    if answer != b"S":
        raise StepFailed(
            f"unexpected answer {answer!r} to the SSLRequest",
            "this port does not speak the PostgreSQL protocol; check the port",
        )


def _verify_failure(
    ex: ssl.SSLCertVerificationError, ca_file: str, host: str
) -> StepFailed:
    code, message = ex.verify_code, ex.verify_message
    detail = f"certificate verification failed: {message}"
    if code in _NAME_MISMATCH:
        return StepFailed(
            detail,
            f"the server's certificate does not name {host}: " + _endpoint_hint(host),
            ca_file=ca_file,
        )
    if code in _UNTRUSTED:
        return StepFailed(
            f"{detail} (chain not trusted by {ca_file})",
            f"{ca_file} does not hold the CA that issued the server's certificate:"
            " for DSQL drop sslrootcert= (a DSQL endpoint name then trusts Amazon's"
            " roots) or name a bundle that has Amazon Root CA 1; behind a"
            " TLS-inspecting proxy name its CA; for DSQL Local use its ca_file",
            ca_file=ca_file,
        )
    if code in _EXPIRED:
        return StepFailed(
            detail,
            "check this machine's clock; if it is right, the server's"
            " certificate is out of date",
            ca_file=ca_file,
        )
    return StepFailed(
        detail, f"the certificate chain does not verify against {ca_file}"
    )


def _endpoint_hint(host: str) -> str:
    address = host if _is_ip(host) else "<ip>"
    return (
        f"host must be the cluster's endpoint name ({ENDPOINT_FORM}), not an IP"
        " address or an alias: the certificate, SNI and token"
        f" are all bound to it; to choose the address add hostaddr={address}"
    )


def _handshake_failure(ex: OSError, direct: bool) -> StepFailed:
    detail = f"TLS handshake failed: {getattr(ex, 'reason', None) or ex}"
    if direct:
        return StepFailed(
            detail,
            "the server may not support direct TLS negotiation (PostgreSQL"
            " before 17, or a proxy): try sslnegotiation=postgres in the target",
        )
    return StepFailed(detail, "check that the port belongs to a DSQL endpoint")


def _name(rdns: Any) -> str:
    parts = [f"{key}={value}" for rdn in rdns for key, value in rdn]
    return ", ".join(parts) if parts else "?"
