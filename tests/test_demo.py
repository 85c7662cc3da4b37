"""The demo (the README's first command) runs and tells a consistent story."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parent.parent / "examples" / "demo.py"
TASK = re.compile(r"Task (\d) (succeeded after (\d+) attempt\(s\)|failed: .*)")
SUMMARY = re.compile(r"Succeeded: (\d+), Failed: (\d+), Final value: (\d+)")
RACE = re.compile(r"== Verification 2: 5 concurrent increments, max_attempts=(\d+) ==")


def run_demo(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_without_credentials_runs_crud_and_both_races() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    out = run_demo(env)

    assert "No AWS credentials in the environment: using a fake key pair" in out
    for line in (
        "Pool connected successfully",
        "Selected: name=item-a, value=42",
        "Updated: value=100",
        "Deleted: 1 row(s)",
        "Dropped table test_items",
    ):
        assert line in out.splitlines(), out

    races = RACE.split(out)[1:]  # [attempts, text, attempts, text]
    assert [int(a) for a in races[::2]] == [3, 10], out
    for max_attempts, text in zip(races[::2], races[1::2], strict=True):
        tasks = TASK.findall(text)
        assert sorted(int(t[0]) for t in tasks) == [0, 1, 2, 3, 4], text
        for _, _, attempts in tasks:
            if attempts:
                assert 1 <= int(attempts) <= int(max_attempts)
        summary = SUMMARY.search(text)
        assert summary is not None, text
        ok, failed, final = map(int, summary.groups())
        assert ok == sum(1 for t in tasks if t[2]), text
        assert ok + failed == 5
        assert final == ok, "lost or double update"
        if int(max_attempts) == 10:
            assert ok == 5, text
    assert "(no lost or double updates)" in out
