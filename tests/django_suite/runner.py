"""The runner of Django's suite on DSQL: skips the listed tests, writes a report.

Tests named in ``expected.txt`` cannot pass on DSQL; each is skipped with the
reason given there, prefixed ``DSQL:``. With ``DSQL_SUITE_REPORT`` set, the
results are written there as JSON for ``run.py``.
"""

from __future__ import annotations

import json
import os
import unittest
from collections import Counter
from pathlib import Path
from typing import Any

from django.test.utils import iter_test_cases

from dsql_psycopg.contrib.django.testing import DiscoverRunner

EXPECTED = Path(__file__).with_name("expected.txt")
SKIP_PREFIX = "DSQL: "


def load_expected(path: Path = EXPECTED) -> dict[str, str]:
    """Map each listed test id (or class or module prefix) to its reason."""
    listed: dict[str, str] = {}
    reason = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("## "):
            reason = line[3:].strip()
        elif line and not line.startswith("#"):
            if not reason:
                raise ValueError(f"{path}: {line} is listed before any reason")
            listed[line] = reason
    return listed


def reason_for(test_id: str, listed: dict[str, str]) -> str | None:
    """Return the listed reason for `test_id`, by its id or an enclosing name."""
    parts = test_id.split(".")
    for end in range(len(parts), 0, -1):
        reason = listed.get(".".join(parts[:end]))
        if reason is not None:
            return reason
    return None


class SuiteRunner(DiscoverRunner):
    """`DiscoverRunner` that skips the listed tests and reports per test."""

    def build_suite(self, *args: Any, **kwargs: Any) -> Any:
        """Build the suite, each listed test skipped with its reason."""
        suite = super().build_suite(*args, **kwargs)
        if os.environ.get("DSQL_SUITE_RUN_LISTED"):
            return suite
        listed = load_expected()
        for test in iter_test_cases(suite):
            reason = reason_for(test.id(), listed)
            if reason is None or not isinstance(test, unittest.TestCase):
                continue
            name = test._testMethodName
            setattr(
                test, name, unittest.skip(SKIP_PREFIX + reason)(getattr(test, name))
            )
        return suite

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        """Run the suite; write the report."""
        result = super().run_suite(suite, **kwargs)
        report = os.environ.get("DSQL_SUITE_REPORT")
        if report:
            Path(report).write_text(json.dumps(summarize(result), indent=1))
        return result


def summarize(result: unittest.TestResult) -> dict[str, Any]:
    """Return the counts and the ids of what did not pass."""
    listed = [t.id() for t, why in result.skipped if why.startswith(SKIP_PREFIX)]
    failed = [t.id() for t, _ in result.failures]
    errors = [t.id() for t, _ in result.errors]
    unexpected = [t.id() for t in result.unexpectedSuccesses]
    skipped = len(result.skipped) - len(listed)
    reasons = Counter(
        why for _, why in result.skipped if not why.startswith(SKIP_PREFIX)
    )
    passed = (
        result.testsRun
        - len(result.skipped)
        - len(failed)
        - len(errors)
        - len(result.expectedFailures)
        - len(unexpected)
    )
    return {
        "run": result.testsRun,
        "passed": passed,
        "failed": failed,
        "errors": errors,
        "listed": listed,
        "skipped": skipped,
        "skip_reasons": dict(reasons.most_common()),
        "expected_failures": len(result.expectedFailures),
        "unexpected_successes": unexpected,
    }
