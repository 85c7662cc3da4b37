"""Amazon Aurora DSQL for psycopg 3."""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
