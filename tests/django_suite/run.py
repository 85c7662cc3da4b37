"""Run Django's own test suite on DSQL Local with this backend.

Downloads the source distribution of the installed Django (``pip download``),
starts a strict DSQL Local, and runs each app's tests with Django's
``runtests.py`` (``--parallel 1``), on an empty ``public`` schema each time.
Prints passed, failed, errors and listed (``expected.txt``) per app, and exits
non-zero when a test that is not listed fails.

    python -m tests.django_suite.run [APP ...] [--fast] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import django
import psycopg

from dsql_local import DsqlLocal

from .settings import OTHER_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".django-suite"
#: The apps web applications lean on.
APPS = [
    "basic",
    "model_fields",
    "lookup",
    "queries",
    "aggregation",
    "expressions",
    "update",
    "delete",
    "get_or_create",
    "transactions",
    "select_related",
    "prefetch_related",
    "bulk_create",
    "ordering",
    "null_queries",
    "many_to_one",
    "many_to_many",
    "one_to_one",
    "auth_tests",
    "sessions_tests",
]
#: A few quick apps for CI.
FAST_APPS = ["basic", "get_or_create", "transactions", "null_queries", "one_to_one"]


def django_tests() -> Path:
    """Return the ``tests`` folder of the installed Django's sdist, fetched once."""
    version = django.__version__
    target = CACHE / f"django-{version}"
    if (target / "tests" / "runtests.py").exists():
        return target / "tests"
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"django=={version}",
                "-d",
                tmp,
            ],
            check=True,
        )
        (archive,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE, filter="data")
    return target / "tests"


def reset_schema(local: DsqlLocal) -> None:
    """Give the next app empty schemas: ``public``, and the other database's."""
    with psycopg.connect(local.backend_dsn, autocommit=True) as conn:
        for schema in ("public", OTHER_SCHEMA):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"GRANT ALL ON SCHEMA {schema} TO PUBLIC")


def run_app(
    local: DsqlLocal, tests: Path, app: str, timeout: float, verbosity: int
) -> dict[str, Any]:
    """Run one app's tests; return the runner's report."""
    reset_schema(local)
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(tests)]),
            "DSQL_SUITE_HOST": local.host,
            "DSQL_SUITE_PORT": str(local.port),
            "DSQL_SUITE_CA": local.ca_file,
            "DSQL_SUITE_REPORT": report.name,
        }
        command = [
            sys.executable,
            "runtests.py",
            "--settings=tests.django_suite.settings",
            "--parallel=1",
            "--noinput",
            f"--verbosity={verbosity}",
            app,
        ]
        try:
            subprocess.run(command, cwd=tests, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"app": app, "crashed": f"timed out after {timeout:.0f} s"}
        text = Path(report.name).read_text()
    if not text:
        return {"app": app, "crashed": "runtests.py ended without a report"}
    return {"app": app, **json.loads(text)}


def table(results: list[dict[str, Any]]) -> str:
    """Format the per-app counts, with a total line."""
    columns = ("passed", "failed", "errors", "listed")
    head = f"{'app':<18} " + " ".join(f"{c:>7}" for c in columns) + " skipped"
    lines = [head, "-" * len(head)]
    totals = [0, 0, 0, 0, 0]
    for r in results:
        if "crashed" in r:
            lines.append(f"{r['app']:<18} {r['crashed']}")
            continue
        row = [
            r["passed"],
            len(r["failed"]),
            len(r["errors"]) + len(r["unexpected_successes"]),
            len(r["listed"]),
            r["skipped"] + r["expected_failures"],
        ]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        lines.append(
            f"{r['app']:<18} " + " ".join(f"{n:>7}" for n in row[:4]) + f" {row[4]:>8}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<18} " + " ".join(f"{n:>7}" for n in totals[:4]) + f" {totals[4]:>8}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("apps", nargs="*", help="apps to run (default: all 20)")
    parser.add_argument("--fast", action="store_true", help="the CI subset")
    parser.add_argument("--timeout", type=float, default=3600, help="per app")
    parser.add_argument("--verbosity", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--run-listed",
        action="store_true",
        help="run the tests expected.txt lists too (to check the list)",
    )
    args = parser.parse_args(argv)
    apps = args.apps or (FAST_APPS if args.fast else APPS)
    # Tokens are signed and checked offline: any key pair will do.
    if not (
        os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")
    ):
        os.environ["AWS_ACCESS_KEY_ID"] = "AKIADJANGOSUITEFAKE0"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "django-suite-fake-secret-access-key"
        os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if args.run_listed:
        os.environ["DSQL_SUITE_RUN_LISTED"] = "1"
    tests = django_tests()
    print(f"Django {django.__version__}: {len(apps)} apps from {tests}", flush=True)
    results = []
    with DsqlLocal(strict=True) as local:
        for app in apps:
            results.append(run_app(local, tests, app, args.timeout, args.verbosity))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    bad = [
        test
        for r in results
        for test in [
            *r.get("failed", []),
            *r.get("errors", []),
            *r.get("unexpected_successes", []),
        ]
    ]
    bad += [f"{r['app']}: {r['crashed']}" for r in results if "crashed" in r]
    if bad:
        print(f"\n{len(bad)} not listed in expected.txt:")
        print("\n".join(f"  {test}" for test in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
