"""SQLAlchemy's ``test_reflection`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_reflection import *
