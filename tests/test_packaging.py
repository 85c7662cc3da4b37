"""The distribution: what a wheel built from this tree carries."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """Build the wheel as a user would, with the installed hatchling."""
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("dsql_psycopg-*.whl")
    return zipfile.ZipFile(built)


def test_license_file_is_the_declared_apache_license() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text().splitlines()
    assert 'license = "Apache-2.0"' in pyproject
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_wheel_carries_the_license(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_name).decode() == (ROOT / "LICENSE").read_text()
    (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = wheel.read(metadata_name).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
