"""Test-suite wide plugins: the fake AWS environment, markers and fixtures.

Fixtures live in `tests/fixtures/` (one plugin module per subject) rather than
in per-directory conftest files; `tests/README.md` maps them.
"""

from __future__ import annotations

pytest_plugins = [
    "pytester",
    "tests.fixtures.aws",
    "tests.fixtures.backend",
    "tests.fixtures.django",
    "tests.fixtures.drivers",
    "tests.fixtures.dsql_local",
    "tests.fixtures.otel",
]
