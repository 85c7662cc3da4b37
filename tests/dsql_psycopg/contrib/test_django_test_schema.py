"""The Django backend's test schema decisions (``_test_schema.py``), no database."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from django.core.exceptions import ImproperlyConfigured

from dsql_psycopg.contrib.django import _test_schema as plan


@pytest.mark.parametrize(
    ("options", "schemas"),
    [
        (None, []),
        ("", []),
        ("-c search_path=app", ["app"]),
        ("-csearch_path=app,public", ["app", "public"]),
        ("--search_path=app", ["app"]),
        ("--search-path=a", ["a"]),
        ('-c search_path="My\\ App",public', ["My App", "public"]),
        ("-c search_path=a,\\ b", ["a", "b"]),
        ("-c timezone=UTC -c search_path=a -c search_path=b", ["b"]),
        ("-c timezone=UTC", []),
    ],
)
def test_search_path_is_read_from_libpq_options(
    options: str | None, schemas: list[str]
) -> None:
    assert plan.search_path(options) == schemas


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, '-c search_path="test_postgres"'),
        (
            "-c timezone=UTC -c search_path=app --search_path=x"
            " -c application_name=a\\ b",
            '-c timezone=UTC -c application_name=a\\ b -c search_path="test_postgres"',
        ),
    ],
)
def test_search_path_replaces_every_other(options: str | None, expected: str) -> None:
    rewritten = plan.with_search_path(options, "test_postgres")
    assert rewritten == expected
    assert plan.search_path(rewritten) == ["test_postgres"]


def settings(**test: object) -> dict[str, object]:
    return {"NAME": "postgres", "OPTIONS": {}, "TEST": test}


@pytest.mark.parametrize(
    ("settings_dict", "schema"),
    [
        (settings(), "test_postgres"),
        (settings(NAME="my_tests"), "my_tests"),
        ({**settings(), "OPTIONS": {"options": "-c search_path=app"}}, "test_app"),
        (
            {**settings(), "OPTIONS": {"options": '-c search_path="$user",public'}},
            "test_postgres",
        ),
    ],
)
def test_schema_is_named_after_the_alias(
    settings_dict: dict[str, object], schema: str
) -> None:
    assert plan.test_schema(settings_dict, "default") == schema


@pytest.mark.parametrize("name", ["postgres", "public", "sys", "pg_temp", "app"])
def test_a_schema_with_data_is_never_the_test_schema(name: str) -> None:
    settings_dict = {
        **settings(NAME=name),
        "OPTIONS": {"options": "-c search_path=app"},
    }
    with pytest.raises(ImproperlyConfigured, match=r"\['TEST'\]\['NAME'\]"):
        plan.test_schema(settings_dict, "default")


def test_a_name_too_long_for_the_workers_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="longer than 59 characters"):
        plan.test_schema(settings(NAME="t" * 60), "default")


SYSTEM = ["pg_catalog", "pg_toast", "information_schema", "public", "sys", "dsql_local"]


def test_room_counts_the_users_schemas_and_the_runs_own() -> None:
    existing = [*SYSTEM, "app", "billing", "test_postgres", "test_postgres_1"]
    room = plan.room(existing, ["test_postgres", "test_postgres_1"])
    assert room.fits
    assert room.others == ("app", "billing")
    assert room.max_workers == 7


def test_room_runs_out_at_dsql_limit() -> None:
    users = [f"s{i}" for i in range(8)]
    room = plan.room(
        [*SYSTEM, *users, "test_postgres", "test_postgres_1"],
        ["test_postgres", "test_postgres_1"],
    )
    assert not room.fits
    assert room.max_workers == 1
    message = plan.no_room_message("default", "test_postgres_2", room, 2)
    assert message == (
        "Cannot create the test schema 'test_postgres_2' for alias 'default': DSQL"
        " allows 10 schemas besides public and sys, and the cluster has 8 of its own"
        " ('s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'); parallel workers need a"
        " schema each besides the test schema (3 or more for --parallel 2 or more):"
        " run with --parallel 1 or fewer, or drop a schema you no longer use."
    )
