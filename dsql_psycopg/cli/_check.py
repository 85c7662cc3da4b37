"""``dsql-psycopg check``: diagnose a connection one step at a time."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from dsql_psycopg import _tls as tls
from dsql_psycopg.errors import ConfigurationError

from . import _db, _iam, _net, _target
from ._steps import Outcome, State, Step, StepFailed


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check",
        help="diagnose a connection step by step",
        description="Check a connection to TARGET one step at a time (configuration,"
        " DNS, TCP, TLS, credentials, token, authentication, query), stopping at"
        " the first failure with a hint. A target with several endpoints (a"
        " multi-Region cluster's, host=a,b) is checked endpoint by endpoint. Exit"
        " status 0 only if every step passed.",
    )
    _target.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="network timeout per step (default 10)",
    )
    parser.set_defaults(run=run)


def configuration(state: State) -> Outcome:
    """Parse the target as the library does and apply its TLS policy."""
    try:
        # libpq's PG* variables (PGHOSTADDR too) are read as connect() reads them.
        params = _target.parse_endpoints(state.args)[state.endpoint]
        libpq = dict(params.libpq)
        trust = tls.apply_tls(libpq)
    except ConfigurationError as ex:
        raise StepFailed("the target is not valid", str(ex)) from None
    # libpq's default port.
    libpq.setdefault("port", "5432")
    state.params, state.libpq = params, libpq
    shown = {
        "host": params.host,
        "hostaddr": libpq.get("hostaddr"),
        "port": libpq["port"],
        "dbname": libpq["dbname"],
        "user": params.user,
        "region": params.region,
        "profile": params.profile,
        "token_duration": params.token_duration,
        "sslmode": libpq["sslmode"],
        "sslrootcert": libpq["sslrootcert"],
        "trust": trust.source,
        "trusted_roots": tls.count_roots(trust.path),
        "sslnegotiation": libpq.get("sslnegotiation", "postgres"),
    }
    # Everything else the user gave goes to libpq unchanged; say so.
    shown.update({k: v for k, v in libpq.items() if k not in shown})
    hidden = {"trust", "trusted_roots"}
    detail = " ".join(
        f"{k}={v}" for k, v in shown.items() if v is not None and k not in hidden
    )
    detail += f" (trust: {_trust(trust.source)}, {shown['trusted_roots']} roots)"
    if params.region is None:
        detail += " (region: from the AWS configuration)"
    return Outcome(detail, {k: v for k, v in shown.items() if v is not None})


def _trust(source: str) -> str:
    """Say where the trust file came from."""
    return {
        "sslrootcert": "the given sslrootcert",
        "PGSSLROOTCERT": "PGSSLROOTCERT",
        "Amazon roots": "Amazon's roots, for a DSQL endpoint name",
        "SSL_CERT_FILE": "SSL_CERT_FILE",
        "OS bundle": "the operating system's bundle",
        "botocore bundle": "botocore's bundle",
    }.get(source, source)


STEPS: tuple[tuple[str, Step], ...] = (
    ("configuration", configuration),
    ("dns", _net.dns),
    ("tcp", _net.tcp),
    ("tls", _net.tls),
    ("credentials", _iam.credentials),
    ("token", _iam.token),
    ("authentication", _db.authentication),
    ("query", _db.query),
)


@dataclass
class Result:
    """One step's verdict."""

    step: str
    ok: bool
    ms: float
    detail: str
    hint: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def diagnose(args: argparse.Namespace, endpoint: int = 0) -> tuple[list[Result], State]:
    """Run the steps in order, for one endpoint of the target, until one fails."""
    state = State(args=args, timeout=args.timeout, endpoint=endpoint)
    results: list[Result] = []
    try:
        for name, step in STEPS:
            results.append(_run_step(name, step, state))
            if not results[-1].ok:
                break
    finally:
        state.close()
    return results, state


def _endpoint_hosts(args: argparse.Namespace) -> list[str]:
    """Return the target's endpoint hosts (one blank if the target is invalid)."""
    try:
        return [p.host for p in _target.parse_endpoints(args)]
    except ConfigurationError:
        return [""]


def _run_step(name: str, step: Step, state: State) -> Result:
    started = time.perf_counter()
    hint: str | None = None
    try:
        outcome = step(state)
    except StepFailed as ex:
        outcome = Outcome(ex.detail, ex.info)
        hint = ex.hint
    except Exception as ex:
        # A diagnosis reports what went wrong; it does not die with a traceback.
        outcome = Outcome(f"unexpected {type(ex).__name__}: {ex}")
        hint = "run again with --verbose, and report it if it persists"
    ms = (time.perf_counter() - started) * 1000
    return Result(name, hint is None, ms, outcome.detail, hint, outcome.info)


def run(args: argparse.Namespace) -> int:
    """Diagnose the target and report, never showing the token."""
    hosts = _endpoint_hosts(args)
    reports = [diagnose(args, n) for n in range(len(hosts))]
    verdicts = [
        all(r.ok for r in results) and len(results) == len(STEPS)
        for results, _ in reports
    ]
    if args.json:
        documents = [
            {
                "ok": passed,
                "failed_step": None if passed else results[-1].step,
                "steps": [{**r.__dict__, "ms": round(r.ms, 3)} for r in results],
            }
            for (results, _), passed in zip(reports, verdicts, strict=True)
        ]
        document = documents[0]
        if len(hosts) > 1:
            document = {
                "ok": all(verdicts),
                "endpoints": [
                    {"host": host, **doc}
                    for host, doc in zip(hosts, documents, strict=True)
                ],
            }
        text = json.dumps(document, indent=2, default=str)
    elif len(hosts) == 1:
        text = _render(reports[0][0], verdicts[0])
    else:
        parts = [
            f"endpoint {n} of {len(hosts)}: {host}\n{_render(results, passed)}"
            for n, (host, (results, _), passed) in enumerate(
                zip(hosts, reports, verdicts, strict=True), 1
            )
        ]
        failed = [host for host, ok in zip(hosts, verdicts, strict=True) if not ok]
        parts.append(
            f"all {len(hosts)} endpoints passed"
            if not failed
            else f"{len(failed)} of {len(hosts)} endpoints failed: {', '.join(failed)}"
        )
        text = "\n\n".join(parts)
    for _, state in reports:
        text = _redact(text, state.token)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return 0 if all(verdicts) else 1


def _render(results: list[Result], passed: bool) -> str:
    lines = []
    for r in results:
        lines.append(
            f"{'ok' if r.ok else 'FAIL':<4} {r.step:<14} {r.ms:8.1f} ms  {r.detail}"
        )
        if r.hint:
            lines.append(f"{'':<4} {'':<14} {'':>11}  hint: {r.hint}")
    if passed:
        lines.append(f"all {len(results)} steps passed")
    else:
        lines.append(f"check failed at step {results[-1].step}")
    return "\n".join(lines)


def _redact(text: str, token: str | None) -> str:
    """Remove any trace of the token; no step should have let one through."""
    if not token:
        return text
    signature = token.rpartition("X-Amz-Signature=")[2]
    for secret in (token, signature):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
