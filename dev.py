"""Run the project's tasks with nothing installed but Python.

    python3 dev.py demo      # DSQL Local and the library at work
    python3 dev.py tests     # the test suite against DSQL Local
    python3 dev.py -s lint typecheck    # any nox arguments: -l lists them

Standard library only: it makes a virtual environment of the project's
(``.dev/``), brings nox into it, and hands the arguments to nox, whose
sessions install everything else (PostgreSQL too, from PyPI, where the machine
has none). Works where the system Python refuses ``pip install`` (PEP 668).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

NOX = "nox>=2025.2.9"
HERE = Path(__file__).resolve().parent
ENV = HERE / ".dev"
SESSIONS = {"demo", "tests"}


def fail(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def env_python() -> Path:
    if os.name == "nt":
        return ENV / "Scripts" / "python.exe"
    return ENV / "bin" / "python"


def works(python: Path) -> bool:
    """Whether the environment's Python starts (a moved Python may not)."""
    try:
        return subprocess.run([str(python), "-c", ""], check=False).returncode == 0
    except OSError:
        return False


def ensure_env() -> Path:
    """Make ``.dev/`` with nox in it, unless it is there already."""
    python = env_python()
    stamp = ENV / "nox-requirement.txt"
    if stamp.exists() and stamp.read_text() == NOX and works(python):
        return python
    try:
        import ensurepip  # noqa: F401, PLC0415 (only a check)
    except ImportError:
        fail(
            f"Python {sys.version_info.major}.{sys.version_info.minor} here cannot"
            " make virtual environments with pip; on Debian/Ubuntu install"
            f" python3-venv (`sudo apt-get install python3.{sys.version_info.minor}"
            "-venv`), or run dev.py with another Python 3.10+"
        )
    if not works(python):
        print(f"dev.py: making a virtual environment in {ENV}", file=sys.stderr)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(ENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            shutil.rmtree(ENV, ignore_errors=True)
            fail(f"could not make a virtual environment in {ENV}: {exc}")
    print(f"dev.py: installing {NOX} into it", file=sys.stderr)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run([*pip, NOX], check=False).returncode != 0:
        fail(f"could not install {NOX} from PyPI into {ENV}")
    stamp.write_text(NOX)
    return python


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 (run by any python3)
        fail(f"dsql-psycopg needs Python 3.10 or newer, not {sys.version.split()[0]}")
    if not argv:
        fail("say what to run: `demo`, `tests`, or nox arguments (`-l` lists them)")
    # `dev.py tests -k retry` reads as nox's `-s tests -- -k retry`.
    if argv[0] in SESSIONS:
        argv = ["-s", argv[0], *(["--", *argv[1:]] if argv[1:] else [])]
    python = ensure_env()
    os.chdir(HERE)
    return subprocess.run([str(python), "-m", "nox", *argv], check=False).returncode


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
