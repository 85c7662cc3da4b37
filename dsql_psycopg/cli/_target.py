"""Turn a command line target into the parameters the library would use."""

from __future__ import annotations

import argparse
import os

from dsql_psycopg import _config as config
from dsql_psycopg._config import DsqlParams
from dsql_psycopg._naming import URL_PREFIXES
from dsql_psycopg.errors import ConfigurationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the target and the options every command shares."""
    parser.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        default="",
        help="a postgresql:// URL, 'key=value ...' pairs, an endpoint host name,"
        " or a cluster id (with --region); without it, the PG* variables"
        " (PGHOST, PGPORT, PGHOSTADDR, PGUSER...), as connect() reads them",
    )
    parser.add_argument("--user", "-U", help="database role (default: admin)")
    parser.add_argument("--region", help="AWS region, if the host does not name one")
    parser.add_argument("--profile", help="AWS profile that supplies the credentials")
    parser.add_argument(
        "--duration",
        type=int,
        metavar="SECONDS",
        help=f"token lifetime (default {config.DEFAULT_TOKEN_DURATION},"
        f" at most {config.MAX_TOKEN_DURATION})",
    )


def conninfo(target: str) -> str:
    """Return `!target` as a conninfo string: a bare host becomes ``host=...``."""
    target = target.strip()
    if target.startswith(URL_PREFIXES) or "=" in target:
        return target
    return f"host={target}" if target else ""


def parse(args: argparse.Namespace) -> DsqlParams:
    """Parse a target of one endpoint exactly as the library parses it."""
    return config.parse(_given(args), **_options(args))


def parse_endpoints(args: argparse.Namespace) -> tuple[DsqlParams, ...]:
    """Parse a target of one or more endpoints (``host=a,b``)."""
    return config.parse_endpoints(_given(args), **_options(args)).each


def _given(args: argparse.Namespace) -> str:
    """Return the target as conninfo; none at all is libpq's ``PG*`` variables."""
    target = conninfo(args.target or "")
    if not target and not os.environ.get("PGHOST"):
        raise ConfigurationError(
            "no TARGET given and PGHOST is not set: pass a TARGET, or export the"
            " PG* variables (PGHOST, PGPORT, PGUSER...; python -m dsql_local"
            " prints them for DSQL Local)"
        )
    return target


def _options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "user": args.user,
        "region": args.region,
        "profile": args.profile,
        "token_duration": args.duration,
    }
