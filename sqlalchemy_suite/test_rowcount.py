"""SQLAlchemy's ``test_rowcount`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_rowcount import *
