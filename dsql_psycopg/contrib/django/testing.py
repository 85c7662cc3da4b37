"""A test runner for Django projects on DSQL.

Set ``TEST_RUNNER = "dsql_psycopg.contrib.django.testing.DiscoverRunner"``.
It is Django's `DiscoverRunner`, with ``TestCase`` made safe on a database
without savepoints: Django then opens each test's transaction before loading
fixtures and running ``setUpTestData``, and if either raises (a conflict is
enough), Django leaves that transaction open, so every later test runs inside
it and fails. This runner rolls it back, so the error fails its own test only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.test import TestCase
from django.test.runner import DiscoverRunner as DjangoDiscoverRunner

__all__ = ["DiscoverRunner", "rollback_failed_fixture_setup"]


def _rolling_back(original: Callable[[], None]) -> Callable[[type[TestCase]], None]:
    def _fixture_setup(cls: type[TestCase]) -> None:
        before = cls.__dict__.get("atomics")
        try:
            original.__func__(cls)  # type: ignore[attr-defined]
        except BaseException:
            atomics = cls.__dict__.get("atomics")
            if atomics is not None and atomics is not before:
                # Nothing must mask the setup's own error: a broken
                # connection is closed by its atomic block's exit anyway.
                with contextlib.suppress(Exception):
                    cls._rollback_atomics(atomics)  # type: ignore[attr-defined]
            raise

    return _fixture_setup


@contextmanager
def rollback_failed_fixture_setup() -> Iterator[None]:
    """Within, a ``TestCase`` whose fixtures or ``setUpTestData`` fail rolls back.

    Django's ``TestCase`` (5.2 and 6.x) on a backend without savepoints
    enters its atomic blocks, then loads fixtures and runs ``setUpTestData``
    for each test, and leaves the blocks open when that raises. This wraps
    ``TestCase._fixture_setup`` so that the blocks are rolled back and the
    error reported.
    """
    original = TestCase.__dict__["_fixture_setup"]
    TestCase._fixture_setup = classmethod(  # type: ignore[attr-defined]
        _rolling_back(original)
    )
    try:
        yield
    finally:
        TestCase._fixture_setup = original  # type: ignore[attr-defined]


class DiscoverRunner(DjangoDiscoverRunner):
    """Django's test runner, with ``TestCase`` safe without savepoints.

    A ``TestCase`` whose fixtures or ``setUpTestData`` fail (a conflict is
    enough) is rolled back, so the error fails that test only, where
    Django's own runner would leave its transaction open for every later
    test (see `rollback_failed_fixture_setup`). Set it in the settings:

    ```python
    TEST_RUNNER = "dsql_psycopg.contrib.django.testing.DiscoverRunner"
    ```

    The test databases themselves are test schemas, made by the backend
    with any runner (see the Django page's "Running Django's tests").
    """

    def run_tests(self, test_labels: Any, **kwargs: Any) -> int:
        """Run the tests, rolling back a ``TestCase`` whose setup fails."""
        with rollback_failed_fixture_setup():
            return super().run_tests(test_labels, **kwargs)
