"""SQLAlchemy's ``test_results`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_results import *
