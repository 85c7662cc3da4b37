"""SQLAlchemy's ``test_select`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_select import *
