"""``dsql-psycopg token``: print a fresh IAM token."""

from __future__ import annotations

import argparse
import sys

from dsql_psycopg import _auth as auth

from . import _target


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "token",
        help="print a fresh IAM token for the target",
        description="Print a fresh IAM token for TARGET on stdout: a DbConnectAdmin"
        " token for the admin role, a DbConnect token for any other role. This is"
        " the only command that ever prints a token.",
    )
    _target.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Sign a token and write it, alone on its line, to stdout."""
    params = _target.parse(args)
    sys.stdout.write(auth.make_token(params) + "\n")
    sys.stdout.flush()
    return 0
