"""Framework integrations: a Django database backend and a SQLAlchemy engine helper.

Each lives in its own module and imports its framework only when used:
``dsql_psycopg.contrib.django`` (``ENGINE``) and ``dsql_psycopg.contrib.sqlalchemy``.
"""

from __future__ import annotations
