"""Run DSQL Local in the foreground: ``python -m dsql_local``.

Prints the connection URL, the environment to export, how to open psql with
a token and how to start the same endpoint again, then serves until
interrupted (Ctrl-C or SIGTERM). Secrets are never printed. With
``--peer-region`` it serves both regional endpoints of a multi-region cluster
and prints both, own region first.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from . import DsqlLocal
from . import _defaults as defaults
from ._errors import DsqlLocalError
from ._faults import CONNECT_REFUSALS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dsql_local",
        description="Run a local endpoint that behaves like an Aurora DSQL cluster.",
    )
    parser.add_argument(
        "--region", default=defaults.REGION, help=f"default: {defaults.REGION}"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any)"
    )
    parser.add_argument(
        "--cluster-id",
        metavar="ID",
        help="26 characters of a-z and 0-9 (default: random); with --port and"
        " --cert-dir, a restart serves the same endpoint",
    )
    parser.add_argument(
        "--cert-dir",
        metavar="DIR",
        help="keep the certificates in DIR (default: a temporary folder deleted"
        " on exit): the CA file keeps its path and content across restarts",
    )
    parser.add_argument(
        "--peer-region",
        metavar="REGION",
        help="serve a multi-region cluster: a second regional endpoint in this"
        " region, over the same data",
    )
    parser.add_argument(
        "--peer-port",
        type=int,
        default=0,
        help="the peer endpoint's TCP port on 127.0.0.1 (default: any)",
    )
    parser.add_argument(
        "--peer-cluster-id",
        metavar="ID",
        help="the peer endpoint's cluster id (default: random)",
    )
    parser.add_argument(
        "--no-strict",
        action="store_true",
        help="accept statements Aurora DSQL would refuse (its own syntax still works)",
    )
    parser.add_argument(
        "--max-connection-age",
        type=float,
        default=defaults.MAX_CONNECTION_AGE,
        metavar="SECONDS",
        help="close connections older than this (default: %(default)g)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="add this much to every round trip (default: 0)",
    )
    parser.add_argument(
        "--schema-conflicts",
        action="store_true",
        help="fail transactions older than another one's DDL with OC001",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.MAX_CONNECTIONS,
        metavar="N",
        help="open connections allowed at once (default: %(default)d, as DSQL)",
    )
    parser.add_argument(
        "--connection-rate",
        type=float,
        default=defaults.CONNECTION_RATE,
        metavar="PER_SECOND",
        help=f"new connections per second, in bursts of up to"
        f" {defaults.CONNECTION_BURST} (default: %(default)g, as DSQL; 0: no limit)",
    )
    faults = parser.add_argument_group(
        "faults", "reproduce what Aurora DSQL does on a bad day"
    )
    faults.add_argument(
        "--refuse-connections",
        choices=sorted(CONNECT_REFUSALS),
        metavar="REASON",
        help="refuse new connections as DSQL does: waking_up (FATAL: unable to"
        " accept connection, waking up cluster, please retry later),"
        " rate_exceeded (53400) or too_many (53300); with --refuse-count"
        " and/or --refuse-seconds",
    )
    faults.add_argument(
        "--refuse-count",
        type=int,
        metavar="N",
        help="refuse the first N connections",
    )
    faults.add_argument(
        "--refuse-seconds",
        type=float,
        metavar="SECONDS",
        help="refuse connections for this long after start",
    )
    faults.add_argument(
        "--server-unavailable-commits",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fail this fraction of COMMITs with ERROR: server unavailable"
        " (XX000); each one committed or not, at random",
    )
    faults.add_argument(
        "--outage-on-sigusr1",
        type=float,
        metavar="SECONDS",
        help="on SIGUSR1, cut every connection and refuse new ones for this"
        " long, then listen again on the same port (the own region's endpoint)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def _exports(local: DsqlLocal) -> list[str]:
    # libpq's multi-host spelling, own region first; one host when alone.
    kwargs = local.multi_region_kwargs()
    values = {
        "PGHOST": kwargs["host"],
        "PGHOSTADDR": kwargs["hostaddr"],
        "PGPORT": kwargs["port"],
        "PGDATABASE": "postgres",
        "PGUSER": "admin",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": local.ca_file,
        "AWS_REGION": local.region,
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def _psql_lines(local: DsqlLocal) -> list[str]:
    """Commands that open psql on the own region's endpoint, token included."""
    if local.peer_region is None:
        # The exports above say everything else.
        return ["dsql-psycopg psql", 'PGPASSWORD="$(dsql-psycopg token)" psql']
    # PGHOST lists both endpoints; a token is for one.
    url = shlex.quote(local.url)
    return [
        f"dsql-psycopg psql {url}",
        f'PGPASSWORD="$(dsql-psycopg token {local.host})" psql {url}',
    ]


def _restart_line(local: DsqlLocal, args: argparse.Namespace) -> str:
    """``python -m dsql_local`` with what names this endpoint: id, port, CA."""
    words = ["python -m dsql_local"]
    if local.region != defaults.REGION:
        words.append(f"--region {local.region}")
    words.append(f"--cluster-id {local.cluster_id} --port {local.port}")
    if local.peer_region is not None:
        peer = local.endpoint(local.peer_region)
        words.append(
            f"--peer-region {peer.region} --peer-cluster-id {peer.cluster_id}"
            f" --peer-port {peer.port}"
        )
    if args.cert_dir is not None:
        words.append(f"--cert-dir {shlex.quote(args.cert_dir)}")
    else:
        words.append("--cert-dir DIR  (DIR: a folder to keep the CA file in)")
    return " ".join(words)


def _arm_faults(local: DsqlLocal, args: argparse.Namespace) -> None:
    if args.refuse_connections:
        local.refuse_connections(
            args.refuse_connections,
            count=args.refuse_count,
            seconds=args.refuse_seconds,
        )
    if args.server_unavailable_commits:
        local.inject_server_unavailable(
            commit_fraction=args.server_unavailable_commits, committed=None
        )
    if args.outage_on_sigusr1 is not None:
        seconds = args.outage_on_sigusr1

        def outage(signum: int, frame: FrameType | None) -> None:
            local.outage(seconds)

        signal.signal(signal.SIGUSR1, outage)


def _write_endpoints(out: TextIO, local: DsqlLocal) -> None:
    if local.peer_region is None:
        out.write(f"DSQL Local is running (cluster {local.cluster_id}).\n\n")
        out.write(f"URL: {local.url}\n\n")
        return
    endpoints = [local.endpoint(region) for region in local.regions]
    clusters = ", ".join(f"{e.cluster_id} in {e.region}" for e in endpoints)
    out.write(f"DSQL Local is running a multi-region cluster ({clusters}).\n\n")
    out.write(f"URL: {local.multi_region_url}\n")
    for endpoint in endpoints:
        out.write(f"URL in {endpoint.region}: {endpoint.url}\n")
    out.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    timed = args.refuse_count is not None or args.refuse_seconds is not None
    if bool(args.refuse_connections) != timed:
        parser.error(
            "--refuse-connections needs --refuse-count and/or --refuse-seconds,"
            " and they need it"
        )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        local = DsqlLocal(
            region=args.region,
            max_connection_age=args.max_connection_age,
            strict=not args.no_strict,
            latency=args.latency,
            port=args.port,
            peer_region=args.peer_region,
            peer_port=args.peer_port,
            cluster_id=args.cluster_id,
            peer_cluster_id=args.peer_cluster_id,
            cert_dir=args.cert_dir,
            schema_conflicts=args.schema_conflicts,
            max_connections=args.max_connections,
            connection_rate=args.connection_rate or None,
        )
        local.start()
    except DsqlLocalError as exc:
        sys.stderr.write(f"dsql-local: {exc}\n")
        return 1
    try:
        _arm_faults(local, args)
    except DsqlLocalError as exc:
        local.stop()
        sys.stderr.write(f"dsql-local: {exc}\n")
        return 1
    try:
        out = sys.stdout
        _write_endpoints(out, local)
        out.write("Environment for libpq/psycopg (the password is an IAM token):\n")
        out.write("".join(line + "\n" for line in _exports(local)))
        out.write("\nThen open psql with a fresh token:\n")
        out.write("".join(f"  {line}\n" for line in _psql_lines(local)))
        out.write("\nThe same endpoint after a restart:\n")
        out.write(f"  {_restart_line(local, args)}\n")
        out.write(
            "\nTokens are checked against AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "as they were when DSQL Local started.\nPress Ctrl-C to stop.\n"
        )
        out.flush()
        while not stop.wait(3600):
            pass
    finally:
        local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
