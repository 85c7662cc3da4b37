"""The benchmark script runs end to end on tiny N (no timing is checked), and
the pictures are drawn from its results."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
RUN = ROOT / "benchmarks" / "run.py"
# The packages of this tree, not whichever copy is installed.
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
PLOTS = RUN.parent / "plots.py"
SCENARIOS = [
    "connect",
    "sign",
    "pool",
    "contention",
    "latency",
    "region",
    "otel",
    "async",
]


def test_benchmarks_quick_run(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--output", str(output)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    titles = ("### 1.", "### 2.", "### 3.", "### 4.", "### 5.", "### 6.", "### 7.")
    for title in (*titles, "### 8."):
        assert title in done.stdout

    results = json.loads(output.read_text())
    scenarios = results["scenarios"]
    assert list(scenarios) == SCENARIOS
    official = importlib.util.find_spec("aurora_dsql_psycopg") is not None
    assert (results["meta"]["official"] is not None) == official
    assert ("official" in scenarios["connect"]["seconds"]) == official

    for stats in scenarios["connect"]["seconds"].values():
        assert stats["n"] == 5
        assert stats["p10"] <= stats["median"] <= stats["p90"]
    assert scenarios["connect"]["seconds"]["floor"]["ratio_to_floor"] == 1.0
    assert "psycopg, our parameters" in scenarios["connect"]["seconds"]
    assert scenarios["connect"]["our_cost_cpu_seconds"]["n"] == 5
    # Amazon's five roots and DSQL Local's CA; the OS bundle has far more
    roots = scenarios["connect"]["trust_roots"]
    assert roots["ours"] == 6
    assert roots["floor"] > roots["ours"]
    assert set(scenarios["pool"]["ops_per_s"]) >= {"floor", "ours"}

    contention = scenarios["contention"]
    assert "ours default" in contention["policies"]
    for per_k in contention["policies"].values():
        assert set(per_k) == {"2", "4"}
        for cell in per_k.values():
            assert 0.0 <= cell["success_rate"] <= 1.0
            assert cell["no_lost_updates"] is True
            if cell["attempts_per_commit"] is not None:
                assert cell["attempts_per_commit"] >= 1.0

    latency = scenarios["latency"]["seconds"]
    assert "floor (classic negotiation)" in latency
    assert "ours" in latency

    region = scenarios["region"]
    assert region["failed_at"] < region["restored_at"]
    per_bin = region["commits_per_bin"]
    assert set(per_bin) == {"us-east-1", "us-west-2"}
    assert sum(map(sum, per_bin.values())) == region["commits"] > 0
    # Before the failure every commit went to the first Region.
    first_failed_bin = int(region["failed_at"] / region["bin_seconds"])
    assert sum(per_bin["us-west-2"][:first_failed_bin]) == 0

    otel = scenarios["otel"]
    checks = otel["checks"]
    for op in ("connect", "transaction"):
        assert set(otel[op]["wall_seconds"]) == {"API absent", "API, no SDK", "SDK on"}
        assert otel[op]["wall_seconds"]["API absent"]["ratio_to_absent"] == 1.0
        assert checks["API absent"][op]["opentelemetry_imported"] is False
        assert checks["API absent"][op]["telemetry_enabled"] is False
        assert checks["API, no SDK"][op]["spans_last_batch"] == 0
    # The SDK saw the spans: one per connect; per retried transaction, the
    # transaction and its two attempts (a conflict, then the commit).
    batch = otel["batch"]
    assert checks["SDK on"]["connect"]["spans_last_batch"] == batch
    assert checks["SDK on"]["transaction"]["spans_last_batch"] == 3 * batch
    assert checks["API, no SDK"]["transaction"]["opentelemetry_imported"] is True

    asyncio_ = scenarios["async"]
    assert set(asyncio_["connect"]["seconds"]) >= {"ours, blocking", "ours, asyncio"}
    assert ("official, asyncio" in asyncio_["connect"]["seconds"]) == official
    signing = asyncio_["signing"]
    # Fresh static credentials: the asyncio connect signs in the event loop.
    assert signing["token_may_block_with_fresh_credentials"] is False
    assert "inline: loop held" in signing["microseconds"]
    for per_k in asyncio_["contention"]["contenders"].values():
        for cell in per_k.values():
            assert 0.0 <= cell["success_rate"] <= 1.0
            assert cell["no_lost_updates"] is True
    images = tmp_path / "img"
    drawn = subprocess.run(
        [sys.executable, str(PLOTS), str(output), "--out", str(images)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert drawn.returncode == 0, drawn.stderr
    for name in ("bench-connect.png", "bench-contention.png", "bench-region.png"):
        png = (images / name).read_bytes()
        assert png.startswith(b"\x89PNG")
        assert len(png) < 150_000
