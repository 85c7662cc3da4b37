"""Authors and their books, with a foreign key and an index.

Revision 0001, the first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authors",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )
    op.create_table(
        "books",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("author_id", sa.BigInteger, sa.ForeignKey("authors.id")),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("pages", sa.Integer),
    )
    # Built by CREATE INDEX ASYNC; the dialect waits for the build.
    op.create_index("ix_books_author_id", "books", ["author_id"])


def downgrade() -> None:
    op.drop_index("ix_books_author_id", table_name="books")
    op.drop_table("books")
    op.drop_table("authors")
