"""Books get an ISBN and lose their page count.

Revision 0002, after 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # DSQL adds a column with a name and a type only: no default, no NOT NULL.
    op.add_column("books", sa.Column("isbn", sa.String(17)))
    op.drop_column("books", "pages")


def downgrade() -> None:
    op.add_column("books", sa.Column("pages", sa.Integer))
    op.drop_column("books", "isbn")
