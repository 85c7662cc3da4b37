"""Every Python sample in docs/**/*.md runs, as written, against DSQL Local.

The samples of one page run in order in one fresh interpreter, sharing their
names like a reader's session. The endpoint placeholder ``<cluster-id>`` is
replaced by DSQL Local's cluster id; libpq reaches it through PGHOSTADDR and
libpq trusts its CA through PGSSLROOTCERT, so the samples stay exactly
what a reader would copy.

A block preceded by ``<!-- docs-sample: skip (reason) -->`` is not run (the
reason is required); ``<!-- docs-sample: pytest -->`` marks a test module,
which is run by pytest with the installed plugin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsql_local import DsqlLocal

DOCS = Path(__file__).parent.parent / "docs"
PLACEHOLDER = "<cluster-id>"
BLOCK = re.compile(
    r"^(?:<!-- docs-sample: (?P<marker>.*?) -->\n)?```python\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
SKIP = re.compile(r"skip \((?P<reason>[^)]+)\)")
# Roles the samples connect as; a real cluster would have them too.
ROLES = ("app",)

RUNNER = """
import json, sys

namespace = {"__name__": "__main__"}
with open(sys.argv[1]) as f:
    blocks = json.load(f)
for sample in blocks:
    # Leading newlines keep tracebacks' line numbers those of the page.
    source = "\\n" * (sample["line"] - 1) + sample["code"]
    exec(compile(source, sample["page"], "exec"), namespace)
"""


@dataclass(frozen=True)
class Sample:
    page: str
    line: int
    code: str
    marker: str | None


def samples(page: Path) -> list[Sample]:
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        rel = str(page.relative_to(DOCS.parent))
        found.append(Sample(rel, line, match["code"], match["marker"]))
    return found


PAGES = sorted(DOCS.rglob("*.md"))


def page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


def test_every_python_block_is_found_and_every_skip_is_justified() -> None:
    total = 0
    for page in PAGES:
        found = samples(page)
        assert len(found) == page.read_text().count("```python"), page
        for sample in found:
            if sample.marker is None or sample.marker == "pytest":
                continue
            skip = SKIP.fullmatch(sample.marker)
            assert skip is not None, f"{sample.page}:{sample.line}: bad marker"
            assert len(skip["reason"].split()) >= 3, f"{sample.page}:{sample.line}"
        total += len(found)
    assert total > 20


def runnable(kind: str) -> list[Path]:
    def wanted(sample: Sample) -> bool:
        if kind == "pytest":
            return sample.marker == "pytest"
        return sample.marker is None

    return [p for p in PAGES if any(wanted(s) for s in samples(p))]


@pytest.mark.parametrize("page", runnable("script"), ids=page_id)
def test_page_samples_run(
    page: Path, dsql_local: DsqlLocal, dsql_schema: str, tmp_path: Path
) -> None:
    for role in ROLES:
        dsql_local.create_role(role)
    blocks = [
        {
            "page": s.page,
            "line": s.line,
            "code": s.code.replace(PLACEHOLDER, dsql_local.cluster_id),
        }
        for s in samples(page)
        if s.marker is None
    ]
    (tmp_path / "samples.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    # The samples run against this tree's packages, not an installed copy.
    env = {**os.environ, "PYTHONPATH": str(DOCS.parent)}
    if any(PLACEHOLDER in s.code or "PGHOST" in s.code for s in samples(page)):
        # Only for pages that use the placeholder or read the environment: a
        # page that starts its own DSQL Local must not have its backend
        # connections rerouted.
        # The page's tables go to a schema of its own, dropped afterwards.
        # PGHOST too, as DSQL Local's exports have it, for the samples that
        # read their host from the environment.
        env.update(
            PGHOST=f"{dsql_local.cluster_id}.dsql.{dsql_local.region}.on.aws",
            PGHOSTADDR="127.0.0.1",
            PGPORT=str(dsql_local.port),
            PGSSLROOTCERT=dsql_local.ca_file,
            PGOPTIONS=f"-c search_path={dsql_schema}",
        )
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "runner.py",
            "samples.json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("page", runnable("pytest"), ids=page_id)
def test_page_test_modules_pass(page: Path, tmp_path: Path) -> None:
    for n, sample in enumerate(s for s in samples(page) if s.marker == "pytest"):
        module = tmp_path / f"test_docs_{page.stem}_{n}.py"
        module.write_text(sample.code)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-W",
                "error",
                "-p",
                "no:cacheprovider",
                str(module),
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(DOCS.parent)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (
            f"{sample.page}:{sample.line}\n{done.stdout}{done.stderr}"
        )
        assert " passed" in done.stdout


def test_documented_retry_defaults_are_the_real_ones() -> None:
    from dsql_psycopg import RetryPolicy  # noqa: PLC0415

    text = (DOCS / "retries.md").read_text()
    defaults = RetryPolicy()
    for name in ("max_attempts", "base_delay", "max_delay", "jitter", "timeout"):
        row = re.search(rf"^\| `{name}` \| `?([^`|]+?)`? \|", text, re.MULTILINE)
        assert row is not None, name
        documented = row[1].strip()
        value = getattr(defaults, name)
        if value is None:
            assert documented == "None", name
        else:
            assert float(documented) == value, name


# A user's project, around the recipe's settings module.
PROJECT_SETTINGS = """
SECRET_KEY = "recipe"
INSTALLED_APPS = ["items"]
DATABASES = {}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
"""
PROJECT_MODELS = """
from django.db import models


class Item(models.Model):
    name = models.TextField(unique=True)
"""
PROJECT_TESTS = """
from django.db import connection
from django.test import TestCase, TransactionTestCase

from items.models import Item


class Rows(TransactionTestCase):
    def test_write_and_read(self):
        Item.objects.create(name="a")
        self.assertEqual(list(Item.objects.values_list("name", flat=True)), ["a"])

    def test_flushed_between_tests(self):
        self.assertEqual(Item.objects.count(), 0)


class Endpoint(TestCase):
    def test_runs_on_dsql_local(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            self.assertTrue(cursor.fetchone()[0].startswith("test_"))
        self.assertTrue(connection.settings_dict["HOST"].endswith(".on.aws"))
"""


def test_django_recipe_runs_manage_py_test(tmp_path: Path) -> None:
    """The recipe's settings module, as written, in a project of its own."""
    page = DOCS / "recipes.md"
    (recipe,) = [
        s for s in samples(page) if s.code.startswith("# mysite/settings_test.py")
    ]
    site = tmp_path / "mysite"
    site.mkdir()
    (site / "__init__.py").write_text("")
    (site / "settings.py").write_text(PROJECT_SETTINGS)
    (site / "settings_test.py").write_text(recipe.code)
    items = tmp_path / "items"
    items.mkdir()
    (items / "__init__.py").write_text("")
    (items / "models.py").write_text(PROJECT_MODELS)
    (items / "tests.py").write_text(PROJECT_TESTS)
    # No AWS variables and no PG* ones: the settings module needs none.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "PG", "DJANGO_"))
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(DOCS.parent)])
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "django",
            "test",
            "--settings=mysite.settings_test",
            "--noinput",
            "-v",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Ran 3 tests" in output, output
    assert "Creating test schema" in output, output
