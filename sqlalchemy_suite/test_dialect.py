"""SQLAlchemy's ``test_dialect`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_dialect import *
