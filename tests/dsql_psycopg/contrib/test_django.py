"""The Django backend on strict DSQL Local: migrate, ORM CRUD, OCC retries."""

from __future__ import annotations

import datetime as dt
import importlib
import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

pytest.importorskip("django")

from django.contrib.auth import authenticate, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ImproperlyConfigured
from django.core.management.color import no_style
from django.db import (
    IntegrityError,
    NotSupportedError,
    OperationalError,
    connections,
    transaction,
)
from django.db import models as django_models
from django.db.migrations.recorder import MigrationRecorder
from django.db.transaction import TransactionManagementError
from django.test import Client

from dsql_local import DsqlLocal
from dsql_psycopg._tls import DIRECT_NEGOTIATION
from dsql_psycopg.connection import DsqlConnection
from dsql_psycopg.contrib.django import retry_atomic
from dsql_psycopg.contrib.django.base import DatabaseWrapper
from dsql_psycopg.contrib.django.client import DatabaseClient
from dsql_psycopg.contrib.django.schema import BATCH_ROWS
from dsql_psycopg.contrib.django.testing import (
    DiscoverRunner,
    rollback_failed_fixture_setup,
)
from dsql_psycopg.errors import ConfigurationError, OCCRetryExhausted
from dsql_psycopg.pool import DEFAULT_MAX_LIFETIME, MAX_LIFETIME_CEILING
from tests.dsql_psycopg.contrib.djangoapp.settings import SEED_AUTHORS
from tests.dsql_psycopg.contrib.djangoapp.settings import databases as django_databases

pytestmark = pytest.mark.usefixtures("django_db")

ALIASES = ["default", "pooled"]


@pytest.fixture
def models() -> ModuleType:
    return importlib.import_module("tests.dsql_psycopg.contrib.djangoapp.models")


def wrapper(settings: dict[str, Any], alias: str) -> DatabaseWrapper:
    """Build a backend for `settings`, with Django's defaults filled in."""
    full = connections.configure_settings({"default": settings})["default"]
    return DatabaseWrapper(full, alias=alias)


def query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


# -- migrate ----------------------------------------------------------------


def test_migrate_applies_every_app() -> None:
    applied = MigrationRecorder(connections["default"]).applied_migrations()
    apps = {app for app, _ in applied}
    assert {"contenttypes", "auth", "sessions", "djangoapp"} <= apps
    assert ("djangoapp", "0003_status_nullable") in applied


FOREIGN_KEYS = (
    "SELECT t.relname, a.attname, r.relname, c.convalidated, c.condeferrable,"
    " c.condeferred FROM pg_constraint c"
    " JOIN pg_class t ON t.oid = c.conrelid"
    " JOIN pg_class r ON r.oid = c.confrelid"
    " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
    " WHERE c.contype = 'f' AND t.relnamespace = 'public'::regnamespace"
)


def foreign_keys() -> dict[tuple[str, str], tuple[str, bool, bool, bool]]:
    """Map (table, column) of each foreign-key constraint to what it says."""
    return {
        (table, column): tuple(rest) for table, column, *rest in query(FOREIGN_KEYS)
    }


def test_every_key_is_a_valid_deferred_constraint() -> None:
    from django.apps import apps  # noqa: PLC0415

    keys = foreign_keys()
    expected = {
        (model._meta.db_table, field.column)
        for model in apps.get_models(include_auto_created=True)
        for field in model._meta.local_fields
        if field.concrete and getattr(field, "db_constraint", False)
    }
    assert set(keys) == expected
    # Checked at COMMIT, as Django makes them, and valid: the rows already
    # there were checked too.
    assert {rest[1:] for rest in keys.values()} == {(True, True, True)}
    # Migrated without constraints, then given them by dsql_add_foreign_keys.
    assert keys["auth_permission", "content_type_id"][0] == "django_content_type"
    assert keys["djangoapp_book", "author_id"][0] == "djangoapp_author"
    assert keys["djangoapp_book_tags", "tag_id"][0] == "djangoapp_tag"
    # Made by 0004: a self-reference and a key to an existing table inline,
    # a key to a table created later added NOT VALID and validated, the
    # explicit and automatic many-to-many tables.
    assert keys["djangoapp_shelf", "parent_id"][0] == "djangoapp_shelf"
    assert keys["djangoapp_room", "main_shelf_id"][0] == "djangoapp_shelf"
    assert keys["djangoapp_shelf", "room_id"][0] == "djangoapp_room"
    assert keys["djangoapp_placement", "book_id"][0] == "djangoapp_book"
    assert keys["djangoapp_shelf_tags", "shelf_id"][0] == "djangoapp_shelf"


@pytest.mark.parametrize(
    ("model", "values"),
    [
        ("Hit", {"counter_id": 10**12}),
        ("Shelf", {"label": "orphan", "parent_id": 10**12}),
        ("Shelf", {"label": "orphan", "room_id": 10**12}),
    ],
)
def test_orphan_insert_fails(
    models: ModuleType, model: str, values: dict[str, Any]
) -> None:
    with pytest.raises(IntegrityError, match="violates foreign key constraint"):
        getattr(models, model).objects.create(**values)


def test_key_graph_works_both_ways(models: ModuleType) -> None:
    room = models.Room.objects.create(name="study")
    top = models.Shelf.objects.create(label="top", room=room)
    low = models.Shelf.objects.create(label="low", parent=top, room=room)
    room.main_shelf = top
    room.save()
    author = models.Author.objects.create(name="Shelved Author")
    book = models.Book.objects.create(
        author=author,
        title="Shelved",
        price=Decimal(1),
        published=dt.date(2020, 1, 1),
        pages=1,
    )
    models.Placement.objects.create(shelf=low, book=book, position=3)
    assert list(book.shelves.all()) == [low]
    assert list(top.children.all()) == [low]
    # Deleting the parent cascades through Django's collector first.
    room.delete()
    assert not models.Shelf.objects.filter(pk__in=[top.pk, low.pk]).exists()
    assert not models.Placement.objects.filter(book=book).exists()


def test_add_foreign_keys_command(models: ModuleType) -> None:
    from django.core.management import CommandError, call_command  # noqa: PLC0415

    out = io.StringIO()
    call_command("dsql_add_foreign_keys", stdout=out)
    assert out.getvalue() == "Every foreign key has its constraint.\n"
    connection = connections["default"]
    hit = models.Hit
    (name,) = [
        n
        for n, c in connection.introspection.get_constraints(
            connection.cursor(), "djangoapp_hit"
        ).items()
        if c["foreign_key"]
    ]
    with connection.schema_editor(atomic=False) as editor:
        editor.execute(editor._delete_fk_sql(hit, name))
    orphan = hit.objects.create(counter_id=10**12)
    try:
        dry = io.StringIO()
        call_command("dsql_add_foreign_keys", "--dry-run", stdout=dry)
        assert "ADD CONSTRAINT" in dry.getvalue()
        assert "NOT VALID" in dry.getvalue()
        assert "ALTER TABLE ASYNC" in dry.getvalue()
        with pytest.raises(
            CommandError, match=r"(?s)refer to nothing.*djangoapp\.Hit\.counter"
        ):
            call_command("dsql_add_foreign_keys", stdout=io.StringIO())
        # The validation failed: no half-made constraint is left behind.
        assert ("djangoapp_hit", "counter_id") not in foreign_keys()
    finally:
        orphan.delete()
    out = io.StringIO()
    call_command("dsql_add_foreign_keys", stdout=out)
    assert out.getvalue().startswith("Added ")
    assert foreign_keys()["djangoapp_hit", "counter_id"] == (
        "djangoapp_counter",
        True,
        True,
        True,
    )


def test_altering_a_key_drops_and_remakes_its_constraint(models: ModuleType) -> None:
    from django.db import models as m  # noqa: PLC0415

    connection = connections["default"]
    shelf = models.Shelf
    old = shelf._meta.get_field("room")
    plain = m.ForeignKey(
        models.Room, m.CASCADE, null=True, related_name="+", db_constraint=False
    )
    plain.set_attributes_from_name("room")
    with connection.schema_editor(atomic=False) as editor:
        editor.alter_field(shelf, old, plain, strict=True)
    try:
        assert ("djangoapp_shelf", "room_id") not in foreign_keys()
    finally:
        with connection.schema_editor(atomic=False) as editor:
            editor.alter_field(shelf, plain, old, strict=True)
    assert foreign_keys()["djangoapp_shelf", "room_id"][0] == "djangoapp_room"


def test_alter_field_refuses_what_dsql_lacks(models: ModuleType) -> None:
    from django.db import models as m  # noqa: PLC0415

    placement = models.Placement
    old = placement._meta.get_field("position")
    wider = m.BigIntegerField(default=0)
    wider.set_attributes_from_name("position")
    connection = connections["default"]
    with (
        pytest.raises(
            NotSupportedError,
            match=r"AlterField djangoapp.Placement.position: .* type integer to bigint"
            r".*AddField.*RunPython.*RemoveField",
        ),
        connection.schema_editor(atomic=False) as editor,
    ):
        editor.alter_field(placement, old, wider)
    room = models.Room._meta.get_field("main_shelf")
    required = m.ForeignKey(models.Shelf, m.SET_NULL, related_name="+")
    required.set_attributes_from_name("main_shelf")
    with (
        pytest.raises(
            NotSupportedError,
            match=r"AlterField djangoapp.Room.main_shelf: .*SET NOT NULL",
        ),
        connection.schema_editor(atomic=False) as editor,
    ):
        editor.alter_field(models.Room, room, required)


def test_add_field_with_db_default_fills_rows_then_remove_field(
    models: ModuleType,
) -> None:
    from django.db import models as m  # noqa: PLC0415

    counter = models.Counter
    counter.objects.bulk_create(
        [counter(name=f"db-default-{n}") for n in range(BATCH_ROWS + 5)]
    )
    score = m.IntegerField(db_default=7)
    score.set_attributes_from_name("score")
    score.model = counter
    connection = connections["default"]
    with connection.schema_editor(atomic=False) as editor:
        editor.add_field(counter, score)
    try:
        # Every row already there has it, and new rows get it from DSQL.
        assert query("SELECT count(*) FROM djangoapp_counter WHERE score IS NULL") == [
            (0,)
        ]
        counter.objects.create(name="db-default-new")
        assert query(
            "SELECT score FROM djangoapp_counter WHERE name = 'db-default-new'"
        ) == [(7,)]
        with pytest.raises(IntegrityError, match="notnull"):
            query(
                "UPDATE djangoapp_counter SET score = NULL WHERE name = 'db-default-1'"
            )
    finally:
        with connection.schema_editor(atomic=False) as editor:
            editor.remove_field(counter, score)
        counter.objects.filter(name__startswith="db-default").delete()
    columns = query(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'djangoapp_counter'"
    )
    assert ("score",) not in columns


def test_foreign_keys_off_leaves_plain_columns(dsql_local: DsqlLocal) -> None:
    settings = django_databases(dsql_local)["no_fks"]
    off = wrapper(settings, "no_fks_check")
    assert not off.features.supports_foreign_keys
    assert not off.features.can_defer_constraint_checks
    assert connections["default"].features.supports_foreign_keys


def test_bigint_identities() -> None:
    identities = dict(
        query(
            "SELECT table_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'id'"
            " AND is_identity = 'YES'"
        )
    )
    # AutoField, SmallAutoField and BigAutoField alike.
    for table in ("djangoapp_author", "djangoapp_tag", "djangoapp_book", "auth_user"):
        assert identities[table] == "bigint"


def test_keys_to_narrow_auto_fields_are_bigint() -> None:
    types = dict(
        query(
            "SELECT table_name || '.' || column_name, data_type"
            " FROM information_schema.columns WHERE table_schema = 'public'"
        )
    )
    # To a SmallAutoField (an m2m table) and to an AutoField (Django's own).
    assert types["djangoapp_book_tags.tag_id"] == "bigint"
    assert types["auth_user_groups.user_id"] == "bigint"
    assert types["auth_permission.content_type_id"] == "bigint"


def test_ids_past_integer_range_fit_in_their_keys(models: ModuleType) -> None:
    group_model = importlib.import_module("django.contrib.auth.models").Group
    user = get_user_model().objects.create(id=2**31 + 7, username="wide")
    group = group_model.objects.create(id=2**31 + 9, name="wide")
    user.groups.add(group)
    assert get_user_model().objects.get(id=2**31 + 7) == user
    assert list(group.user_set.all()) == [user]
    assert list(user.groups.all()) == [group]
    tag = models.Tag.objects.create(id=40_000, slug="wide")
    author = models.Author.objects.create(name="Wide Keys")
    book = models.Book.objects.create(
        author=author,
        title="Wide",
        price=Decimal("1.00"),
        published=dt.date(2020, 1, 1),
        pages=1,
    )
    book.tags.add(tag)
    assert list(tag.books.all()) == [book]


def test_indexes_were_built_as_async_jobs() -> None:
    built = {
        name
        for (name,) in query(
            "SELECT object_name FROM sys.jobs WHERE status = 'completed'"
        )
    }
    # Made on a table with 1,500 rows, which a plain CREATE INDEX refuses.
    assert "author_email_idx" in built
    assert any(name.startswith("djangoapp_author_joined_") for name in built)
    like_indexes = query(
        "SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", ["%\\_like"]
    )
    assert like_indexes == []


def test_descending_index_is_built_ascending(models: ModuleType) -> None:
    # DSQL refuses ASC/DESC on index keys; Django leaves the order out, as it
    # does on other databases without it (a B-tree is read either way).
    index = django_models.Index(fields=["-joined", "name"], name="author_recent_idx")
    with connections["default"].schema_editor() as editor:
        editor.add_index(models.Author, index)
    try:
        (definition,) = query(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'author_recent_idx'"
        )
        assert "DESC" not in definition[0]
        assert "(joined, name)" in definition[0]
    finally:
        with connections["default"].schema_editor() as editor:
            editor.remove_index(models.Author, index)


def test_second_migration_kept_and_filled_existing_rows(models: ModuleType) -> None:
    seeded = models.Author.objects.filter(name__startswith="seed-")
    assert seeded.count() == SEED_AUTHORS
    # Filled with the new field's default, batch after batch...
    assert seeded.exclude(nickname="anon").count() == 0
    # ...and NOT NULL from now on, though ADD COLUMN could not say so.
    with pytest.raises(IntegrityError, match="notnull"):
        models.Author.objects.create(name="no-nickname", nickname=None)
    # A check constraint (PositiveSmallIntegerField) came the same way.
    with pytest.raises(IntegrityError, match="check"):
        models.Author.objects.create(name="negative", age=-1)
    # NOT NULL lifted again (0003): its CHECK dropped, no column rebuilt.
    assert seeded.exclude(status="new").count() == 0
    assert models.Author.objects.create(name="no-status", status=None).status is None
    in_place = query(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'djangoapp_author' ORDER BY ordinal_position"
    )
    # DSQL runs DROP NOT NULL itself (since 2026-07-06): no column was
    # rebuilt, so email kept its place before the columns added later.
    names = [name for (name,) in in_place]
    assert names.index("email") < names.index("status")
    # The column kept every value and now takes NULL.
    assert seeded.filter(email__endswith="@example.com").count() == SEED_AUTHORS
    one = seeded.get(name="seed-7")
    assert one.email == "seed-7@example.com"
    models.Author.objects.filter(pk=one.pk).update(email=None)
    one.refresh_from_db()
    assert one.email is None
    # max_length grew without DDL: the column is an unbounded varchar.
    long_name = "x" * 150
    models.Author.objects.create(name=long_name)
    assert models.Author.objects.filter(name=long_name).exists()


def test_column_that_lost_not_null_keeps_its_check(models: ModuleType) -> None:
    author = models.Author.objects.create(name="copies")
    fields = {"price": Decimal("1.00"), "published": dt.date(2020, 1, 1), "pages": 1}
    book = models.Book.objects.create(author=author, title="t", copies=None, **fields)
    assert book.copies is None
    with pytest.raises(IntegrityError, match="copies"):
        models.Book.objects.create(author=author, title="u", copies=-1, **fields)


def test_removed_uniques_are_gone(models: ModuleType) -> None:
    # A field's UNIQUE constraint and a unique_together index, both dropped.
    models.Tag.objects.bulk_create([models.Tag(slug="dup"), models.Tag(slug="dup")])
    assert models.Tag.objects.filter(slug="dup").count() == 2
    author = models.Author.objects.create(name="twice")
    fields = {"pages": 1, "price": Decimal("1.00"), "published": dt.date(2020, 1, 1)}
    models.Book.objects.create(author=author, title="same", **fields)
    models.Book.objects.create(author=author, title="same", **fields)
    assert author.books.count() == 2


def test_unique_constraint_on_rows_is_an_index_job(models: ModuleType) -> None:
    from django.db.models import UniqueConstraint  # noqa: PLC0415

    models.Tag.objects.bulk_create([models.Tag(slug="twin"), models.Tag(slug="twin")])
    constraint = UniqueConstraint(fields=["slug"], name="tag_slug_uniq")
    # The duplicates fail the index build job, and the error says so.
    with (
        pytest.raises(IntegrityError, match=r"index build job .* failed"),
        connections["default"].schema_editor() as editor,
    ):
        editor.add_constraint(models.Tag, constraint)
    models.Tag.objects.filter(slug="twin").first().delete()
    models.Tag.objects.filter(slug="dup").delete()
    with connections["default"].schema_editor() as editor:
        editor.add_constraint(models.Tag, constraint)
    with pytest.raises(IntegrityError, match="tag_slug_uniq"):
        models.Tag.objects.create(slug="twin")
    # Dropped as the index it is, not as a table constraint.
    with connections["default"].schema_editor() as editor:
        editor.remove_constraint(models.Tag, constraint)
    models.Tag.objects.create(slug="twin")
    assert models.Tag.objects.filter(slug="twin").count() == 2


# -- connections -------------------------------------------------------------


@pytest.mark.parametrize("alias", ALIASES)
def test_every_connection_is_a_dsql_connection(alias: str) -> None:
    wrapper = connections[alias]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('TimeZone')")
        assert cursor.fetchone() == ("admin", "UTC")
    assert isinstance(wrapper.connection, DsqlConnection)
    assert wrapper.connection.info.get_parameters()["sslmode"] == "verify-full"
    pool = wrapper.pool
    if alias == "pooled":
        assert pool is not None
        assert 0 < pool.max_lifetime <= MAX_LIFETIME_CEILING
        assert pool.connection_class is DsqlConnection
    else:
        assert pool is None


def test_dsql_options_go_in_options(dsql_local: DsqlLocal) -> None:
    settings = django_databases(dsql_local)["default"]
    options = {
        **settings["OPTIONS"],
        "cluster_id": dsql_local.cluster_id,
        "region": dsql_local.region,
        "token_duration": 60,
    }
    by_id = wrapper({**settings, "HOST": "", "OPTIONS": options}, "by_id")
    try:
        with by_id.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        assert by_id.connection.info.host == dsql_local.host
    finally:
        by_id.close()


def test_host_lists_the_endpoints_of_a_multi_region_cluster(
    dsql_local: DsqlLocal, dsql_local_multi_region: DsqlLocal
) -> None:
    local = dsql_local_multi_region
    both = local.multi_region_kwargs()
    settings = django_databases(dsql_local)["default"]
    options = {
        "hostaddr": both["hostaddr"],
        "sslrootcert": both["sslrootcert"],
        "endpoint_cooldown": 0.1,
    }
    multi = wrapper(
        {**settings, "HOST": both["host"], "PORT": both["port"], "OPTIONS": options},
        "multi_region",
    )
    home, peer = (local.endpoint(region) for region in local.regions)
    try:
        with multi.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert multi.connection.endpoint == home.host
        multi.close()
        local.fail_region(home.region)
        with multi.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        assert multi.connection.endpoint == peer.host
    finally:
        multi.close()


def test_pool_lifetime_over_dsql_cap_is_refused(dsql_local: DsqlLocal) -> None:
    settings = django_databases(dsql_local)["pooled"]
    options = {**settings["OPTIONS"], "pool": {"max_lifetime": 2 * 3600}}
    too_long = wrapper({**settings, "OPTIONS": options}, "too_long")
    with pytest.raises(ConfigurationError, match="max_lifetime"):
        _ = too_long.pool


@pytest.mark.parametrize("max_age", [None, 7200])
def test_persistent_connections_retire_before_dsql_cap(
    dsql_local: DsqlLocal, max_age: int | None
) -> None:
    settings = {**django_databases(dsql_local)["default"], "CONN_MAX_AGE": max_age}
    persistent = wrapper(settings, "persistent")
    persistent.connect()
    try:
        assert persistent.close_at is not None
        assert persistent.close_at - time.monotonic() <= DEFAULT_MAX_LIFETIME
    finally:
        persistent.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PASSWORD": "secret"}, "IAM token"),
        ({"OPTIONS": {"isolation_level": 1}}, "REPEATABLE READ"),
        ({"OPTIONS": {"identity_cache": 100}}, "65536"),
        ({"OPTIONS": {"foreign_keys": "no"}}, "True .* or False"),
    ],
)
def test_bad_settings_are_refused(
    dsql_local: DsqlLocal, change: dict[str, Any], message: str
) -> None:
    settings = {**django_databases(dsql_local)["default"], **change}
    with pytest.raises(ImproperlyConfigured, match=message):
        wrapper(settings, "bad")


@pytest.mark.parametrize("pooled", [False, True])
def test_database_time_zone_is_set_without_set_config(
    dsql_local: DsqlLocal, pooled: bool
) -> None:
    settings = django_databases(dsql_local)["pooled" if pooled else "default"]
    alias = f"chicago-{pooled}"
    chicago = wrapper({**settings, "TIME_ZONE": "America/Chicago"}, alias)
    try:
        with chicago.cursor() as cursor:
            cursor.execute("SHOW TimeZone")
            assert cursor.fetchone() == ("America/Chicago",)
    finally:
        chicago.close()
        chicago.close_pool()


def test_identity_cache_option_reaches_the_ddl(dsql_local: DsqlLocal) -> None:
    settings = django_databases(dsql_local)["default"]
    options = {**settings["OPTIONS"], "identity_cache": 65536}
    cached = wrapper({**settings, "OPTIONS": options}, "cached")
    assert cached.data_types_suffix["AutoField"].endswith("(CACHE 65536)")


# -- ORM ----------------------------------------------------------------------


@pytest.mark.parametrize("alias", ALIASES)
def test_orm_create_read_update_delete(alias: str, models: ModuleType) -> None:
    db = models.Author.objects.using(alias)
    author = db.create(name=f"crud-{alias}", email=f"{alias}@example.com")
    models.Profile.objects.using(alias).create(author=author, bio="writes")
    tags = [models.Tag(slug=f"{alias}-{n}") for n in range(3)]
    models.Tag.objects.using(alias).bulk_create(tags)
    isbn = uuid.uuid4()
    book = models.Book.objects.using(alias).create(
        author=author,
        title="Snapshot Isolation",
        summary="All about optimism.",
        pages=321,
        words=9_000_000_000,
        edition=2,
        rating=5,
        price=Decimal("42.50"),
        weight=0.75,
        published=dt.date(2024, 5, 17),
        reading_time=dt.timedelta(hours=6, minutes=30),
        opens_at=dt.time(9, 15),
        isbn=isbn,
        metadata={"lang": "en", "keywords": ["occ", "dsql"]},
        cover=b"\x00\x01binary",
        homepage="https://example.com/book",
        ip="2001:db8::1",
    )
    book.tags.add(*models.Tag.objects.using(alias).filter(slug__startswith=alias))

    got = models.Book.objects.using(alias).select_related("author").get(isbn=isbn)
    assert got.id == book.id
    assert got.author.name == f"crud-{alias}"
    assert got.author.profile.bio == "writes"
    assert (got.pages, got.words, got.edition, got.rating) == (321, 9_000_000_000, 2, 5)
    assert got.price == Decimal("42.50")
    assert got.weight == pytest.approx(0.75)
    assert got.published == dt.date(2024, 5, 17)
    assert got.added.tzinfo is not None
    assert got.reading_time == dt.timedelta(hours=6, minutes=30)
    assert got.opens_at == dt.time(9, 15)
    # DSQL has no inet columns: the address is text, and text lookups work.
    assert got.ip == "2001:db8::1"
    assert models.Book.objects.using(alias).filter(ip__istartswith="2001:DB8").exists()
    assert got.metadata == {"lang": "en", "keywords": ["occ", "dsql"]}
    assert bytes(got.cover) == b"\x00\x01binary"
    assert got.ip == "2001:db8::1"
    assert got.in_print is True
    assert sorted(t.slug for t in got.tags.all()) == [f"{alias}-{n}" for n in range(3)]
    found = models.Book.objects.using(alias).filter(
        title__icontains="snapshot", metadata__lang="en", published__year=2024
    )
    assert list(found.values_list("id", flat=True)) == [book.id]
    # iterator() would use a server-side cursor on PostgreSQL.
    assert [b.id for b in found.iterator(chunk_size=1)] == [book.id]

    models.Book.objects.using(alias).filter(pk=book.pk).update(pages=322)
    got.title = "Snapshot Isolation, 2nd ed."
    got.save(update_fields=["title"])
    got.refresh_from_db()
    assert (got.title, got.pages) == ("Snapshot Isolation, 2nd ed.", 322)

    # No foreign keys in the database: Django's collector cascades.
    author.delete()
    assert not models.Book.objects.using(alias).filter(isbn=isbn).exists()
    assert not models.Profile.objects.using(alias).filter(author_id=author.pk).exists()
    through = models.Book.tags.through.objects.using(alias)
    assert not through.filter(book_id=book.pk).exists()


@pytest.mark.parametrize("alias", ALIASES)
def test_nested_atomic_joins_the_outer_transaction(
    alias: str, models: ModuleType
) -> None:
    name = f"nested-{alias}"
    with transaction.atomic(using=alias):
        models.Counter.objects.using(alias).create(name=name)
        try:
            with transaction.atomic(using=alias):
                models.Counter.objects.using(alias).filter(name=name).update(value=1)
                raise LookupError("inner block fails")
        except LookupError:
            pass
        # Without savepoints the failure dooms the whole transaction, and
        # the next query is refused, saying why and what to do instead.
        assert connections[alias].needs_rollback
        with pytest.raises(
            TransactionManagementError,
            match=r"(?s)can't execute queries.*no savepoints.*outermost atomic",
        ):
            models.Counter.objects.using(alias).count()
    assert not models.Counter.objects.using(alias).filter(name=name).exists()


def test_auth_and_sessions_work() -> None:
    permission = importlib.import_module("django.contrib.auth.models").Permission
    content_type = importlib.import_module("django.contrib.contenttypes.models")
    user = get_user_model().objects.create_user("ada", password="correct horse")
    assert user.last_login is None
    assert authenticate(username="ada", password="correct horse") == user
    assert authenticate(username="ada", password="wrong") is None
    book = content_type.ContentType.objects.get(app_label="djangoapp", model="book")
    assert permission.objects.filter(content_type=book).count() == 4
    store = SessionStore()
    store["user"] = user.pk
    store.create()
    assert SessionStore(session_key=store.session_key).load() == {"user": user.pk}


def test_flush_deletes_and_restarts_identities(models: ModuleType) -> None:
    counter = models.Counter.objects.create(name="flushed")
    models.Hit.objects.bulk_create([models.Hit(counter=counter) for _ in range(5)])
    ops = connections["default"].ops
    ops.execute_sql_flush(
        ops.sql_flush(no_style(), ["djangoapp_hit"], reset_sequences=True)
    )
    assert models.Hit.objects.count() == 0
    assert models.Hit.objects.create(counter=counter).id == 1


def test_flush_retries_a_conflict(dsql_local: DsqlLocal, models: ModuleType) -> None:
    counter = models.Counter.objects.create(name="conflicted flush")
    models.Hit.objects.bulk_create([models.Hit(counter=counter) for _ in range(3)])
    ops = connections["default"].ops
    # The first DELETE meets a conflict at its (autocommit) COMMIT.
    dsql_local.inject_conflicts(1)
    try:
        ops.execute_sql_flush(
            ops.sql_flush(no_style(), ["djangoapp_hit", "djangoapp_counter"])
        )
    finally:
        dsql_local.inject_conflicts(0)
    assert models.Hit.objects.count() == 0
    assert models.Counter.objects.count() == 0


def test_flush_empties_referenced_tables_last(models: ModuleType) -> None:
    room = models.Room.objects.create(name="flushed")
    shelf = models.Shelf.objects.create(label="flushed", room=room)
    room.main_shelf = shelf
    room.save()  # a cycle: each table refers to the other
    models.Shelf.objects.create(label="child", parent=shelf, room=room)
    author = models.Author.objects.create(name="Flushed Author")
    book = models.Book.objects.create(
        author=author,
        title="F",
        price=Decimal(1),
        published=dt.date(2020, 1, 1),
        pages=1,
    )
    models.Placement.objects.create(shelf=shelf, book=book)
    ops = connections["default"].ops
    tables = ["djangoapp_placement", "djangoapp_room", "djangoapp_shelf"]
    # Listed parents first: a DELETE per table in that order would leave
    # placements pointing at deleted shelves.
    ops.execute_sql_flush(ops.sql_flush(no_style(), sorted(tables, reverse=True)))
    assert not models.Placement.objects.exists()
    assert not models.Shelf.objects.exists()
    assert not models.Room.objects.exists()
    assert models.Book.objects.filter(pk=book.pk).exists()


def test_flush_empties_tables_past_the_row_limit(models: ModuleType) -> None:
    ops = connections["default"].ops
    tables = ["djangoapp_hit", "djangoapp_counter"]
    counter = models.Counter.objects.create(name="big flush")
    for _ in range(2):  # 3,500 rows, each half a transaction of its own
        models.Hit.objects.bulk_create(
            [models.Hit(counter=counter) for _ in range(1750)]
        )
    # What Django's flush would run in one transaction is refused by DSQL.
    with pytest.raises(OperationalError, match="row limit"), transaction.atomic():
        ops.execute_sql_flush(ops.sql_flush(no_style(), tables))
    assert models.Hit.objects.filter(counter=counter).count() == 3500
    # Outside one (flush, TransactionTestCase), it goes in batches.
    ops.execute_sql_flush(ops.sql_flush(no_style(), tables))
    assert models.Hit.objects.count() == 0
    assert models.Counter.objects.count() == 0


# -- OCC ----------------------------------------------------------------------


def test_view_meeting_a_conflict_is_retried_and_writes_once(
    dsql_local: DsqlLocal, models: ModuleType
) -> None:
    views = importlib.import_module("tests.dsql_psycopg.contrib.djangoapp.views")
    before = views.RUNS["hit"]
    dsql_local.inject_conflicts(1)
    response = Client().post("/hit/occ-view/")
    assert response.status_code == 200
    assert response.json() == {"name": "occ-view", "value": 1}
    assert views.RUNS["hit"] - before == 2  # the conflict, then the success
    counter = models.Counter.objects.get(name="occ-view")
    assert counter.value == 1
    assert models.Hit.objects.filter(counter=counter).count() == 1


def test_retry_atomic_on_the_pooled_alias(
    dsql_local: DsqlLocal, models: ModuleType
) -> None:
    runs = []

    @retry_atomic(using="pooled", base_delay=0, max_delay=0)
    def open_counter(name: str) -> int:
        runs.append(name)
        return models.Counter.objects.using("pooled").create(name=name).pk

    dsql_local.inject_conflicts(1)
    pk = open_counter("pooled-occ")
    assert runs == ["pooled-occ", "pooled-occ"]
    assert list(
        models.Counter.objects.using("pooled")
        .filter(name="pooled-occ")
        .values_list("pk", flat=True)
    ) == [pk]


def test_retries_give_up_after_max_attempts(
    dsql_local: DsqlLocal, models: ModuleType
) -> None:
    @retry_atomic(max_attempts=2, base_delay=0, max_delay=0)
    def bump() -> None:
        models.Counter.objects.create(name="given-up")

    dsql_local.inject_conflicts(2)
    with pytest.raises(OCCRetryExhausted) as info:
        bump()
    assert info.value.attempts == 2
    cause = info.value.__cause__
    while cause is not None and not isinstance(cause, psycopg.Error):
        cause = cause.__cause__
    assert isinstance(cause, psycopg.errors.SerializationFailure)
    assert not models.Counter.objects.filter(name="given-up").exists()


def test_select_for_update_takes_its_tails(models: ModuleType) -> None:
    counter = models.Counter.objects.create(name="locked")
    hit = models.Hit.objects.create(counter=counter)
    counters = models.Counter.objects.filter(pk=counter.pk)
    with transaction.atomic():
        assert list(counters.select_for_update(nowait=True)) == [counter]
        assert list(counters.select_for_update(skip_locked=True)) == [counter]
        hits = models.Hit.objects.select_related("counter").filter(pk=hit.pk)
        assert list(hits.select_for_update(of=("self", "counter"))) == [hit]
        # FOR NO KEY UPDATE is refused by DSQL: Django says so before sending it.
        with pytest.raises(NotSupportedError, match="FOR NO KEY UPDATE"):
            list(counters.select_for_update(no_key=True))
    assert not connections["default"].in_atomic_block


def test_select_for_update_nowait_fails_at_commit_not_at_the_read(
    models: ModuleType,
) -> None:
    counter = models.Counter.objects.create(name="nowait")
    counters = models.Counter.objects.filter(pk=counter.pk)
    with (  # noqa: PT012
        pytest.raises(OperationalError, match=r"\(OC000\)"),
        transaction.atomic(),
    ):
        assert counters.exists()  # the snapshot
        models.Counter.objects.using("pooled").filter(pk=counter.pk).update(value=7)
        # In DSQL nothing waits: NOWAIT finds no lock to refuse, the read
        # answers, and the changed row fails the COMMIT.
        assert [c.value for c in counters.select_for_update(nowait=True)] == [0]
    assert models.Counter.objects.get(pk=counter.pk).value == 7


def test_retry_atomic_refuses_to_run_inside_atomic(models: ModuleType) -> None:
    calls = []

    @retry_atomic
    def inner() -> None:
        calls.append(1)

    with (
        pytest.raises(TransactionManagementError, match="outside atomic"),
        transaction.atomic(),
    ):
        inner()
    assert calls == []
    inner()
    assert calls == [1]


# -- Django's own test framework --------------------------------------------


def test_aliases_with_their_own_search_path_are_two_test_databases(
    dsql_local: DsqlLocal,
) -> None:
    settings = django_databases(dsql_local)["default"]
    first = wrapper(settings, "first").creation
    pooled = {**settings, "OPTIONS": {**settings["OPTIONS"], "pool": True}}
    assert wrapper(pooled, "same").creation.test_db_signature() == (
        first.test_db_signature()
    )
    other = {
        **settings,
        "OPTIONS": {**settings["OPTIONS"], "options": "-c search_path=b"},
    }
    assert wrapper(other, "other").creation.test_db_signature() != (
        first.test_db_signature()
    )
    assert first._get_test_db_name() == "test_postgres"
    assert wrapper(other, "other").creation._get_test_db_name() == "test_b"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("postgres", "the database itself: the tests would empty your tables"),
        ("public", "a schema the test runner would empty and drop"),
        ("app", "a schema the test runner would empty and drop"),
    ],
)
def test_test_schema_is_never_one_with_data(
    dsql_local: DsqlLocal, name: str, message: str
) -> None:
    settings = django_databases(dsql_local)["default"]
    settings = {
        **settings,
        "OPTIONS": {**settings["OPTIONS"], "options": "-c search_path=app,public"},
        "TEST": {"NAME": name},
    }
    with pytest.raises(ImproperlyConfigured, match=message):
        wrapper(settings, "tests").creation._get_test_db_name()


ROOT = Path(__file__).resolve().parents[3]
USER_ROW = "made-by-the-user"


def manage_py_test(
    dsql_local: DsqlLocal, report: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py test`` of the sample project's runner tests."""
    return manage_py(
        dsql_local,
        "test",
        "tests.dsql_psycopg.contrib.djangoapp.runner_tests",
        "--noinput",
        *args,
        report=report,
    )


def schemas() -> set[str]:
    return {name for (name,) in query("SELECT nspname FROM pg_namespace")}


@pytest.fixture
def user_row(models: ModuleType) -> Iterator[None]:
    """A row the user made in their own table before running the tests."""
    models.Counter.objects.create(name=USER_ROW, value=7)
    yield
    models.Counter.objects.filter(name=USER_ROW).delete()


@pytest.mark.slow
@pytest.mark.usefixtures("user_row")
def test_manage_py_test_leaves_the_users_rows_alone(
    dsql_local: DsqlLocal, models: ModuleType, tmp_path: Path
) -> None:
    run = manage_py_test(dsql_local, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Ran 3 tests" in run.stderr
    assert (
        "Creating test schema 'test_postgres' in database 'postgres' for alias"
        " 'default' (the tests run there; your own schemas are not touched)..."
    ) in run.stderr
    assert (
        "Destroying test schema 'test_postgres' in database 'postgres' for alias"
        " 'default'..."
    ) in run.stderr
    assert "Creating test database" not in run.stderr
    assert models.Counter.objects.get(name=USER_ROW).value == 7
    ran_in = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert len(ran_in) == 3
    assert set(ran_in.values()) == {"test_postgres"}
    assert "test_postgres" not in schemas()


@pytest.mark.slow
@pytest.mark.usefixtures("user_row")
def test_manage_py_test_parallel_gives_each_worker_a_schema(
    dsql_local: DsqlLocal, models: ModuleType, tmp_path: Path
) -> None:
    run = manage_py_test(dsql_local, tmp_path, "--parallel", "2")
    assert run.returncode == 0, run.stderr
    assert "Ran 3 tests" in run.stderr
    workers = ["test_postgres_1", "test_postgres_2"]
    for worker in workers:
        assert f"Creating test schema {worker!r} in database 'postgres'" in run.stderr
        assert f"Destroying test schema {worker!r}" in run.stderr
    assert models.Counter.objects.get(name=USER_ROW).value == 7
    ran_in = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert len(ran_in) == 3
    assert set(ran_in.values()) <= set(workers)
    assert not {"test_postgres", *workers} & schemas()


PSQL = shutil.which("psql")


def manage_py(
    dsql_local: DsqlLocal, *args: str, report: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a ``manage.py`` command of the sample project, as a user would."""
    env = {
        **os.environ,
        "DSQL_DJANGO_HOST": dsql_local.host,
        "DSQL_DJANGO_PORT": str(dsql_local.port),
        "DSQL_DJANGO_CA": dsql_local.ca_file,
        "PYTHONPATH": str(ROOT),
    }
    if report is not None:
        env["DSQL_DJANGO_REPORT"] = str(report)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            args[0],
            "--settings=tests.dsql_psycopg.contrib.djangoapp.project_settings",
            *args[1:],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
def test_dbshell_opens_psql_with_a_fresh_token(dsql_local: DsqlLocal) -> None:
    run = manage_py(
        dsql_local, "dbshell", "--", "-X", "-A", "-t", "-c", "select current_user"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "admin\n"
    assert "X-Amz" not in run.stderr


def test_dbshell_passes_the_token_in_the_environment_only(
    dsql_local: DsqlLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = connections.configure_settings(
        {"default": django_databases(dsql_local)["pooled"]}
    )["default"]
    args, env = DatabaseClient.settings_to_cmd_args_env(settings, ["-c", "select 1"])
    assert args == ["psql", "-c", "select 1"]
    assert env["PGPASSWORD"].startswith(f"{dsql_local.host}/?Action=DbConnectAdmin&")
    assert {k: v for k, v in env.items() if k != "PGPASSWORD"} == {
        "PGHOST": dsql_local.host,
        "PGHOSTADDR": "127.0.0.1",
        "PGPORT": str(dsql_local.port),
        "PGDATABASE": "postgres",
        "PGUSER": "admin",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": dsql_local.ca_file,
        **({"PGSSLNEGOTIATION": "direct"} if DIRECT_NEGOTIATION else {}),
    }
    # What psql gets logs in.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with psycopg.connect() as conn:
        assert conn.execute("select current_user").fetchone() == ("admin",)


@pytest.fixture
def crowded(dsql_local: DsqlLocal) -> Iterator[Callable[[int], None]]:
    """Fill the cluster with schemas until `n` count toward DSQL's limit."""
    made: list[str] = []

    def fill(n: int) -> None:
        from dsql_psycopg.contrib.django import _test_schema  # noqa: PLC0415

        counted = _test_schema.room(schemas(), ()).others
        for i in range(n - len(counted)):
            name = f"filler_{i}"
            query_ddl(f"CREATE SCHEMA {name}")
            made.append(name)

    yield fill
    for name in made:
        query_ddl(f"DROP SCHEMA IF EXISTS {name}")


def query_ddl(statement: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(statement)


def test_parallel_workers_past_the_schema_limit_are_refused(
    dsql_local: DsqlLocal,
    crowded: Callable[[int], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    crowded(9)
    creation = wrapper(django_databases(dsql_local)["default"], "limits").creation
    creation._create_test_db(verbosity=1, autoclobber=True)
    assert "test_postgres" in schemas()
    with pytest.raises(SystemExit) as stopped:
        creation.clone_test_db("1", verbosity=0)
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert (
        "Cannot create the test schema 'test_postgres_1' for alias 'limits'" in message
    )
    assert (
        "DSQL allows 10 schemas besides public and sys, and the cluster has 9"
        in message
    )
    assert "there is room for the test schema alone: run without --parallel" in message
    # Nothing is left behind.
    assert not {"test_postgres", "test_postgres_1"} & schemas()


def test_test_schema_past_the_schema_limit_is_refused(
    dsql_local: DsqlLocal,
    crowded: Callable[[int], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    crowded(10)
    creation = wrapper(django_databases(dsql_local)["default"], "limits").creation
    with pytest.raises(SystemExit) as stopped:
        creation._create_test_db(verbosity=0, autoclobber=True)
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "the cluster has 10 of its own" in message
    assert "Drop a schema you no longer use." in message
    assert "test_postgres" not in schemas()


def test_django_testcase_isolates_tests_without_savepoints(
    models: ModuleType,
) -> None:
    """Without savepoints, TestCase runs each test in its own transaction."""
    import unittest  # noqa: PLC0415

    from django.test import TestCase  # noqa: PLC0415

    class Isolated(TestCase):
        @classmethod
        def setUpTestData(cls) -> None:
            models.Counter.objects.create(name="testcase", value=1)

        def test_a_changes_the_row(self) -> None:
            models.Counter.objects.filter(name="testcase").update(value=99)
            assert models.Counter.objects.get(name="testcase").value == 99

        def test_b_sees_the_class_data_again(self) -> None:
            assert models.Counter.objects.get(name="testcase").value == 1

    result = unittest.TextTestRunner(stream=io.StringIO()).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(Isolated)
    )
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 2


def test_failing_test_data_fails_its_own_test_only(models: ModuleType) -> None:
    """With the runner's fix, a setUpTestData that raises is rolled back."""
    import unittest  # noqa: PLC0415

    from django.test import TestCase  # noqa: PLC0415

    calls = []

    class BrokenSetup(TestCase):
        @classmethod
        def setUpTestData(cls) -> None:
            calls.append(cls)
            models.Counter.objects.create(name="half-set-up")
            if len(calls) == 1:
                raise OperationalError("a conflict while setting up")

        def test_first(self) -> None:
            assert models.Counter.objects.filter(name="half-set-up").count() == 1

        def test_second(self) -> None:
            assert models.Counter.objects.filter(name="half-set-up").count() == 1

    class Healthy(TestCase):
        def test_sees_a_clean_database(self) -> None:
            assert not models.Counter.objects.filter(name="half-set-up").exists()

    suite = unittest.TestSuite()
    loader = unittest.defaultTestLoader
    suite.addTests(loader.loadTestsFromTestCase(BrokenSetup))
    suite.addTests(loader.loadTestsFromTestCase(Healthy))
    with rollback_failed_fixture_setup():
        result = unittest.TextTestRunner(stream=io.StringIO()).run(suite)
    assert [test.id().rsplit(".", 1)[-1] for test, _ in result.errors] == ["test_first"]
    assert result.failures == []
    # Django counts a test whose setup failed as an error, not as run.
    assert result.testsRun == 2
    assert not connections["default"].in_atomic_block
    assert not models.Counter.objects.filter(name="half-set-up").exists()


def test_discover_runner_installs_the_fix_for_its_run() -> None:
    from django.test import TestCase  # noqa: PLC0415

    seen = []

    class Runner(DiscoverRunner):
        def run_suite(self, suite: Any, **kwargs: Any) -> Any:
            seen.append(TestCase.__dict__["_fixture_setup"])
            return super().run_suite(suite, **kwargs)

        def setup_databases(self, **kwargs: Any) -> Any:
            return []

        def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
            pass

        def run_checks(self, databases: Any) -> None:
            pass

    original = TestCase.__dict__["_fixture_setup"]
    Runner(verbosity=0).run_tests(["tests.dsql_psycopg.contrib.djangoapp.apps"])
    assert seen
    assert seen[0] is not original
    assert TestCase.__dict__["_fixture_setup"] is original


# -- collations -------------------------------------------------------------


def test_collation_c_is_accepted_and_others_refused() -> None:
    from django.db import models as m  # noqa: PLC0415

    class Collated(m.Model):
        c_name = m.CharField(max_length=10, db_collation="C")
        c_text = m.TextField(db_collation="C")
        swedish = m.CharField(max_length=10, db_collation="sv-x-icu")

        class Meta:
            app_label = "djangoapp"

    errors = Collated.check(databases=["default"])
    assert [(e.id, e.obj.name) for e in errors] == [("dsql_psycopg.E001", "swedish")]
    assert "collates in 'C' only" in errors[0].msg
    assert errors[0].hint == "Remove db_collation, or set it to 'C'."
    connection = connections["default"]
    with connection.schema_editor(collect_sql=True) as editor:
        sql, _ = editor.column_sql(Collated, Collated._meta.get_field("c_name"))
        # DSQL refuses COLLATE in a column definition, even "C".
        assert sql.split() == ["varchar", "NOT", "NULL"]
        with pytest.raises(NotSupportedError, match="sv-x-icu"):
            editor.column_sql(Collated, Collated._meta.get_field("swedish"))
