"""pytest fixtures for testing against DSQL Local."""

from __future__ import annotations
