"""The error DSQL Local raises on its own account."""

from __future__ import annotations


class DsqlLocalError(Exception):
    """DSQL Local could not start or run, or was given bad options."""
