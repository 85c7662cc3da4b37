"""SQLAlchemy's ``test_update_delete`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_update_delete import *
