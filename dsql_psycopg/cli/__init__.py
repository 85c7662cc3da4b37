"""The ``dsql-psycopg`` command: ``token``, ``check`` and ``psql``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dsql_psycopg._version import __version__
from dsql_psycopg.errors import DsqlError

from . import _check, _psql, _token

_PROG = "dsql-psycopg"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the whole command."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Amazon Aurora DSQL from the terminal: tokens, connection"
        " diagnosis and psql.",
        epilog="TARGET is what dsql_psycopg.connect() accepts: a postgresql:// URL,"
        " 'key=value ...' pairs, an endpoint name such as"
        " <cluster-id>.dsql.us-east-1.on.aws, or a cluster id with --region.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what dsql_psycopg does to stderr",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands.required = True
    _token.add_parser(commands)
    _check.add_parser(commands)
    _psql.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" belongs to the program run (psql), untouched.
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unexpected arguments after --: {' '.join(extra)}")
    args.extra = extra
    if args.verbose:
        _log_to_stderr()
    try:
        status: int = args.run(args)
    except DsqlError as ex:
        sys.stderr.write(f"{_PROG}: error: {ex}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return status


def _log_to_stderr() -> None:
    # Only our own logger: botocore logs signatures at DEBUG.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("dsql_psycopg")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
