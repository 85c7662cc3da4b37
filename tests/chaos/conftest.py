"""Collect each chaos scenario's outcome and print them as one table."""

from __future__ import annotations

import pytest

from tests.chaos.ledger import FULL, Outcome

OUTCOMES: list[Outcome] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    write = terminalreporter.write_line
    size = "full size" if FULL else "CI size (DSQL_CHAOS=full for the full run)"
    terminalreporter.section(f"chaos scenarios, {size}")
    write(
        "| scenario | fault s | committed | unknown (present/absent) | lost"
        " | double | counter = rows | failures | retries by reason | max attempt"
        " | first commit after s | notes |"
    )
    write("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for o in OUTCOMES:
        failures = ", ".join(f"{k} {v}" for k, v in sorted(o.failures.items()))
        retries = ", ".join(f"{k} {v}" for k, v in sorted(o.retries.items()))
        first = "" if o.first_commit_after is None else f"{o.first_commit_after:.3f}"
        write(
            f"| {o.scenario} | {o.fault_seconds:.2f} | {o.committed}"
            f" | {o.unknown_present}/{o.unknown_absent} | {o.lost}"
            f" | {o.double_applied} | {o.counter == o.rows} | {failures or '-'}"
            f" | {retries or '-'} | {o.max_attempts} | {first} | {o.notes} |"
        )
