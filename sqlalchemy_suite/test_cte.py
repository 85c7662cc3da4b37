"""SQLAlchemy's ``test_cte`` suite module on DSQL Local."""

from sqlalchemy.testing.suite.test_cte import *
