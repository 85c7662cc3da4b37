"""SQLAlchemy's ``test_table_via_select`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_table_via_select import *
