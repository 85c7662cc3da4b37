"""Flask-SQLAlchemy on Aurora DSQL, through dsql_psycopg's engine helper.

Run it against a cluster (or DSQL Local: ``python -m dsql_local``)::

    DSQL_URL=postgresql://admin@<cluster-id>.dsql.us-east-1.on.aws/postgres \
        flask --app sqlalchemy_app run

`DsqlSQLAlchemy` makes Flask-SQLAlchemy build its engines with
`dsql_psycopg.contrib.sqlalchemy.create_engine` (IAM token per connection,
verify-full TLS, recycling before DSQL's connection cap). `unit_of_work`
commits the session and, on a conflict, rolls it back and runs the handler's
work again.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, abort, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import orm

from dsql_psycopg.contrib.sqlalchemy import create_engine
from dsql_psycopg.retry import RetryEvent, retry_on_occ

R = TypeVar("R")


class DsqlSQLAlchemy(SQLAlchemy):
    """Flask-SQLAlchemy whose engines connect the DSQL way."""

    def _make_engine(
        self, bind_key: str | None, options: dict[str, Any], app: Flask
    ) -> sa.Engine:
        return create_engine(**options)


class Base(orm.DeclarativeBase):
    pass


db = DsqlSQLAlchemy(model_class=Base)


class Page(Base):
    __tablename__ = "flask_pages"

    slug: orm.Mapped[str] = orm.mapped_column(sa.String(100), primary_key=True)
    views: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)


class Visit(Base):
    __tablename__ = "flask_visits"

    id: orm.Mapped[uuid.UUID] = orm.mapped_column(primary_key=True, default=uuid.uuid4)
    slug: orm.Mapped[str] = orm.mapped_column(sa.String(100), index=True)
    at: orm.Mapped[dt.datetime] = orm.mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


def _record_retry(event: RetryEvent) -> None:
    current_app.extensions["dsql_retries"].append(event)


def unit_of_work(fn: Callable[..., R]) -> Callable[..., R]:
    """Run `fn`, then commit ``db.session``; on a conflict, start over."""

    @retry_on_occ(on_retry=_record_retry)
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> R:
        try:
            result = fn(*args, **kwargs)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        return result

    return run


def create_app(url: str | None = None) -> Flask:
    """Build the app on `url` (or $DSQL_URL)."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = url or os.environ["DSQL_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}
    app.extensions["dsql_retries"] = []
    db.init_app(app)
    with app.app_context():
        # The dialect runs each CREATE in a transaction of its own.
        db.metadata.create_all(db.engine)

    @app.post("/pages/<slug>/visits")
    @unit_of_work
    def visit(slug: str) -> dict[str, Any]:
        page = db.session.get(Page, slug) or Page(slug=slug, views=0)
        page.views += 1
        db.session.add_all([page, Visit(slug=slug)])
        return {"slug": slug, "views": page.views}

    @app.get("/pages/<slug>")
    def show(slug: str) -> dict[str, Any]:
        page = db.session.get(Page, slug)
        if page is None:
            abort(404)
        visits = db.session.scalar(
            sa.select(sa.func.count()).select_from(Visit).where(Visit.slug == slug)
        )
        return {"slug": slug, "views": page.views, "visits": visits}

    return app
