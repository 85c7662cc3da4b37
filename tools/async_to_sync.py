"""Write the blocking twins of the asyncio modules: ``_transaction.py``.

Run: python tools/async_to_sync.py [--check]

The asyncio module is the one to edit; its blocking twin is made from it by
the rewrites below (``await`` dropped, ``async with`` to ``with``,
``AsyncConnection`` to ``Connection`` and so on), then formatted by ruff.
``--check`` writes nothing and fails when a twin on disk differs from what
its source gives (the lint session runs it).
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dsql_psycopg"
# asyncio source -> blocking twin
TWINS = {"_async_transaction.py": "_transaction.py"}

# Applied in order to the whole text; patterns use re.MULTILINE.
REWRITES: tuple[tuple[str, str], ...] = (
    # What only an asyncio module says of itself.
    (r'^"""The asyncio driver of ', '"""The blocking driver of '),
    (
        r"^The blocking driver, `_transaction\.py`, is generated from this module by\n"
        r"``tools/async_to_sync\.py``: edit this one, then run the tool\.\n",
        "Generated from `_async_transaction.py` by ``tools/async_to_sync.py``:\n"
        "edit that module, then run the tool.\n",
    ),
    # asyncio itself.
    (r"^( *)import asyncio\n\n(?= *import)", r""),
    (r"^import asyncio\n", ""),
    (r"\basyncio\.sleep\(", "time.sleep("),
    (r"\basyncio\.run\((\w+\(\))\)", r"\1"),
    (r"\bawait ", ""),
    (r"\basync (def|with|for)\b", r"\1"),
    (r"\b__a(enter|exit|iter|next)__\b", r"__\1__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bAbstractAsyncContextManager\b", "AbstractContextManager"),
    (r"\bAwaitable, ", ""),
    (r"\bAwaitable\[(\w+)\]", r"\1"),
    # psycopg's and our own names: AsyncConnection -> Connection, and so on.
    (r"\b(_?)Async(?=[A-Z])", r"\1"),
    (r"\bAC\b", "C"),
)


def to_sync(text: str) -> str:
    """Return the blocking twin of an asyncio module's text, unformatted."""
    for pattern, replacement in REWRITES:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    return text


def formatted(text: str, name: str) -> str:
    """Return `text` as ``ruff format`` leaves it."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", name, "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"ruff format failed on {name}: {done.stderr.strip()}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if a twin is out of date"
    )
    args = parser.parse_args()
    stale = 0
    for source, twin in TWINS.items():
        target = PACKAGE / twin
        text = formatted(to_sync((PACKAGE / source).read_text()), str(target))
        if not args.check:
            target.write_text(text)
            continue
        current = target.read_text()
        if current != text:
            stale += 1
            sys.stderr.writelines(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"{twin} (on disk)",
                    f"{twin} (from {source})",
                )
            )
    if stale:
        print(
            f"{stale} blocking twin(s) out of date: run python tools/async_to_sync.py",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
