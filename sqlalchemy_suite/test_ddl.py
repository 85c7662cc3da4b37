"""SQLAlchemy's ``test_ddl`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_ddl import *
