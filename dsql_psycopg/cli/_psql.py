"""``dsql-psycopg psql``: run psql with a fresh token and the library's TLS settings.

The token travels in ``PGPASSWORD`` only: never on psql's command line (where
``ps`` shows it) and never in any output. Connection settings go in the
matching ``PG*`` variables, so a psql whose libpq predates a setting (such as
``sslnegotiation``, libpq 17) simply ignores it instead of failing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from psycopg import pq
from psycopg.conninfo import make_conninfo

from dsql_psycopg import _auth as auth
from dsql_psycopg import _tls as tls

from . import _target

MISSING_EXIT = 127


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "psql",
        help="run psql connected to the target",
        description="Run psql against TARGET with a fresh token in PGPASSWORD and"
        " the library's TLS settings (verify-full, CA bundle, direct negotiation)."
        " Arguments after -- go to psql unchanged, e.g."
        " dsql-psycopg psql TARGET -- -c 'select 1'.",
    )
    _target.add_arguments(parser)
    parser.add_argument(
        "--psql",
        default=os.environ.get("PSQL", "psql"),
        metavar="PATH",
        help="the psql program (default: $PSQL, else psql on PATH)",
    )
    parser.set_defaults(run=run, takes_extra=True)


def run(args: argparse.Namespace) -> int:
    """Run psql and return its exit status."""
    program = shutil.which(args.psql)
    if program is None:
        sys.stderr.write(
            f"dsql-psycopg: error: {args.psql!r} not found: install the PostgreSQL"
            " client (Debian/Ubuntu: apt install postgresql-client; Fedora/Amazon"
            " Linux: dnf install postgresql; macOS: brew install libpq), or pass"
            " --psql /path/to/psql\n"
        )
        return MISSING_EXIT
    params = _target.parse(args)
    libpq = dict(params.libpq)
    tls.apply_tls(libpq)
    env, argv = environment(libpq, os.environ)
    env["PGPASSWORD"] = auth.make_token(params)
    # psql takes Ctrl-C to cancel a query; this process just waits for it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call([program, *argv, *args.extra], env=env)
    finally:
        signal.signal(signal.SIGINT, previous)


def environment(
    libpq: Mapping[str, Any], base: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Return psql's environment and the psql arguments for `!libpq`.

    Settings with a ``PG*`` variable go there; any others go in a conninfo
    string passed as ``--dbname``.
    """
    envvars = {
        opt.keyword.decode(): opt.envvar.decode()
        for opt in pq.Conninfo.get_defaults()
        if opt.envvar
    }
    env = {k: v for k, v in base.items() if k not in {"PGPASSFILE", "PGSERVICE"}}
    rest: dict[str, Any] = {}
    for key, value in libpq.items():
        if key in envvars:
            env[envvars[key]] = str(value)
        else:
            rest[key] = value
    if not rest:
        return env, []
    rest["dbname"] = libpq["dbname"]
    return env, [f"--dbname={make_conninfo('', **rest)}"]
