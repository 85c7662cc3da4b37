"""Development tasks: tests, unit, lint, typecheck, demo, bench and docs."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install(session: nox.Session, *groups: str, extras: str = "local,postgres") -> None:
    """Install the package with `extras` and the named dependency groups."""
    deps = [
        dep
        for group in groups
        for dep in nox.project.dependency_groups(PYPROJECT, group)
    ]
    session.install("-e", f".[{extras}]", *deps)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against DSQL Local."""
    install(session, "test", extras="local,postgres,django,sqlalchemy,alembic")
    session.run("pytest", *session.posargs, env={"AWS_EC2_METADATA_DISABLED": "true"})


@nox.session
def unit(session: nox.Session) -> None:
    """Run every test that needs no PostgreSQL (tests/README.md), in seconds."""
    install(session, "test", extras="local,django,sqlalchemy")
    session.run(
        "pytest",
        "-m",
        "not backend",
        *session.posargs,
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    )


@nox.session
def chaos(session: nox.Session) -> None:
    """Run the chaos scenarios at full size (the test suite runs them small)."""
    install(session, "test")
    session.run(
        "pytest",
        "tests/chaos",
        *session.posargs,
        env={"AWS_EC2_METADATA_DISABLED": "true", "DSQL_CHAOS": "full"},
    )


# A quick part of SQLAlchemy's suite, for CI; the whole suite takes minutes.
SQLALCHEMY_SUITE_FAST = [
    "sqlalchemy_suite/test_ddl.py",
    "sqlalchemy_suite/test_dialect.py",
    "sqlalchemy_suite/test_insert.py",
    "sqlalchemy_suite/test_sequence.py",
    "sqlalchemy_suite/test_update_delete.py",
]


@nox.session(name="sqlalchemy-suite")
def sqlalchemy_suite(session: nox.Session) -> None:
    """Run SQLAlchemy's dialect compliance suite on DSQL Local.

    ``nox -s sqlalchemy-suite`` runs all of it; ``-- --fast`` the part CI runs;
    other arguments go to pytest (``-- sqlalchemy_suite/test_types.py -x``).
    """
    install(session, "test", extras="local,postgres,sqlalchemy")
    args = session.posargs
    if args == ["--fast"]:
        args = SQLALCHEMY_SUITE_FAST
    elif not any(arg.startswith("sqlalchemy_suite") for arg in args):
        args = ["sqlalchemy_suite", *args]
    session.run(
        "pytest",
        "-c",
        "sqlalchemy_suite/setup.cfg",
        *args,
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    )


# Django 5.2 LTS and the current 6.x (which needs Python >= 3.12). A Python
# that is not installed is skipped, not failed.
DJANGO = {"5.2": "django~=5.2.0", "6": "django>=6,<7"}


@nox.session
@nox.parametrize(
    ("python", "django"),
    [("3.10", "5.2"), ("3.13", "5.2"), ("3.12", "6"), ("3.13", "6")],
)
def django(session: nox.Session, django: str) -> None:
    """Run the framework integration tests with each supported Django."""
    install(session, "test", extras="local,postgres,django,sqlalchemy,alembic")
    session.install(DJANGO[django])
    session.run(
        "pytest",
        "tests/dsql_psycopg/contrib",
        *session.posargs,
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    )


@nox.session(name="django-suite")
def django_suite(session: nox.Session) -> None:
    """Run Django's own tests (20 apps) on DSQL Local; ``-- --fast`` for CI's subset.

    Takes the installed Django's source distribution from PyPI; other
    arguments go to ``tests/django_suite/run.py`` (apps, ``--timeout``).
    """
    install(session, extras="local,postgres,django")
    # What these apps' tests need beyond Django (others skip without them).
    session.install(DJANGO["5.2"], "pillow", "bcrypt", "argon2-cffi")
    session.run(
        "python",
        "-m",
        "tests.django_suite.run",
        *session.posargs,
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    )


@nox.session
def conformance(session: nox.Session) -> None:
    """Replay a real DSQL cluster's recorded answers; print what differs."""
    install(session, "test")
    session.run(
        "python", "-m", "tests.conformance", env={"AWS_EC2_METADATA_DISABLED": "true"}
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The blocking drivers generated from their asyncio twins are up to date.
    session.run("python", "tools/async_to_sync.py", "--check")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check both packages with mypy --strict."""
    install(session, "typecheck", extras="local,django,sqlalchemy,alembic")
    session.run("mypy", "--strict", "dsql_psycopg", "dsql_local")


@nox.session
def demo(session: nox.Session) -> None:
    """Start DSQL Local and show the library at work."""
    install(session)
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark against plain psycopg and the official connector; draw the
    pictures the docs show (docs/img) from the newest results."""
    install(session, "bench", extras="local,postgres,otel")
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/plots.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict."""
    install(session, "docs", extras="local")
    session.run("mkdocs", "build", "--strict")
