"""SQLAlchemy's ``test_sequence`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_sequence import *
