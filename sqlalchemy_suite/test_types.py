"""SQLAlchemy's ``test_types`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_types import *
