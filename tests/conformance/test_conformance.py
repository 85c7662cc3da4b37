"""DSQL Local answers the recorded probes as a real DSQL cluster did.

The whole corpus is replayed once, in order, on a strict DSQL Local of its
own; each case is then a test. A case may differ only if
``known_gaps.json`` lists it with the reason (or the corpus itself marks it
as not enforced). ``nox -s conformance`` prints the same comparison.
"""

from __future__ import annotations

import pytest

from .harness import replay_on_dsql_local
from .replay import CaseResult, load_corpus, load_known_gaps

CORPUS = load_corpus()
GAPS = load_known_gaps()
CASES = {case["id"]: case for case in CORPUS["cases"]}


@pytest.fixture(scope="module")
def results() -> dict[str, CaseResult]:
    return {r.case_id: r for r in replay_on_dsql_local()}


def test_every_case_was_replayed(results: dict[str, CaseResult]) -> None:
    assert sorted(results) == sorted(CASES)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_case_matches_a_real_cluster(
    results: dict[str, CaseResult], case_id: str
) -> None:
    result = results[case_id]
    listed = case_id in GAPS or not result.enforced
    if not listed:
        assert result.matches, "\n".join(result.differences)
    elif result.matches and case_id in GAPS and CASES[case_id]["sessions"] == 1:
        pytest.fail(f"{case_id} now matches: remove it from known_gaps.json")


def test_known_gaps_name_cases_and_reasons() -> None:
    for case_id, reason in GAPS.items():
        assert case_id in CASES, f"{case_id} is not a case of the corpus"
        assert len(reason) > 20, f"{case_id}: say why DSQL Local differs"
