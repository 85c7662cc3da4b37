"""SQLAlchemy's ``test_insert`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_insert import *
