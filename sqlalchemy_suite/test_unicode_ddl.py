"""SQLAlchemy's ``test_unicode_ddl`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_unicode_ddl import *
