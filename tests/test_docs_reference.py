"""The API reference (docs/api/) is complete, and its docstrings' examples run.

- Every name a public module exports is rendered by a ``::: module.name``
  directive (or by a directive for its whole module), and has a docstring of
  its own; `RetryOptions` documents each of its keys.
- Docstrings are written as mkdocstrings renders them: examples in fenced
  ``python`` blocks, no reST literal blocks (``Examples::``), and a sample
  that writes ``dsql.`` imports the package under that name.
- Every example in a docstring of a documented object (and of its public
  members) runs against DSQL Local, as tests/test_docs_samples.py runs the
  guide's samples: each docstring in a fresh interpreter namespace.
- Every command-line option of ``dsql-psycopg``, ``python -m dsql_local`` and
  the pytest plugin is in a table of docs/api/.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsql_local import DsqlLocal

ROOT = Path(__file__).parent.parent
API = ROOT / "docs" / "api"
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.MULTILINE)
DIRECTIVE = re.compile(
    r"^::: (?P<target>[\w.]+)\n(?P<options>(?:    .*\n)*)", re.MULTILINE
)
MEMBERS = re.compile(r"^\s+members:\s*(?P<value>.*)$", re.MULTILINE)
FENCE = re.compile(
    r"^(?:<!-- docs-sample: (?P<marker>.*?) -->\n)?```python\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
PLACEHOLDER = "<cluster-id>"

# The modules whose __all__ is the public API, and the names in them that are
# not objects to document (modules and the version string).
MODULES = (
    "dsql_psycopg",
    "dsql_psycopg.typing",
    "dsql_psycopg.errors",
    "dsql_psycopg.contrib.sqlalchemy",
    "dsql_psycopg.contrib.alembic",
    "dsql_psycopg.contrib.django",
    "dsql_psycopg.contrib.django.testing",
    "dsql_local",
)
NOT_OBJECTS = frozenset({"errors", "typing", "__version__"})
PACKAGES = frozenset({"dsql_psycopg", "dsql_local"})


def api_text(page: Path) -> str:
    """A page of docs/api/ with its snippets included, as mkdocs sees it."""
    text = page.read_text()
    return SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text(), text)


def directives() -> list[tuple[str, list[str] | None]]:
    """Each ``:::`` target with its ``members`` list (None: all of them)."""
    found: list[tuple[str, list[str] | None]] = []
    for page in sorted(API.glob("*.md")):
        for match in DIRECTIVE.finditer(api_text(page)):
            members_opt = MEMBERS.search(match["options"])
            members: list[str] | None = None
            if members_opt is not None:
                value = members_opt["value"].strip()
                members = (
                    []
                    if value == "false"
                    else [m.strip() for m in value.strip("[]").split(",")]
                )
            found.append((match["target"], members))
    return found


def resolve(target: str) -> Any:
    """The object a dotted path names (a module, or an attribute of one)."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise LookupError(target)


def documented() -> dict[str, Any]:
    """Every object the reference renders, by its documented path."""
    objects: dict[str, Any] = {}
    for target, members in directives():
        obj = resolve(target)
        objects[target] = obj
        if isinstance(obj, types.ModuleType):
            names = public_names(obj) if members is None else members
            for name in names:
                if name not in NOT_OBJECTS:
                    objects[f"{target}.{name}"] = getattr(obj, name)
        elif members:
            for name in members:
                objects[f"{target}.{name}"] = getattr(obj, name)
    return objects


def own_docstring(obj: Any) -> str:
    """The docstring written for `obj` itself, not one it inherits."""
    if isinstance(obj, type):
        return obj.__dict__.get("__doc__") or ""
    if isinstance(obj, property):
        return obj.__doc__ or ""
    return getattr(obj, "__doc__", None) or ""


def attribute_docstrings(namespace: types.ModuleType | type) -> dict[str, str]:
    """Attributes documented by a string right after them (PEP 257)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(namespace))).body
    if isinstance(namespace, type):
        (node,) = body
        assert isinstance(node, ast.ClassDef)
        body = node.body
    found = {}
    for node, after in itertools.pairwise(body):
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        if (
            isinstance(target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[target.id] = after.value.value
    return found


def public_names(module: types.ModuleType) -> list[str]:
    """`__all__`, else the public names the module defines itself."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    ]


def docstring_of(path: str, obj: Any) -> str:
    doc = own_docstring(obj)
    if doc and not isinstance(obj, (str, int, float)):
        return doc
    # An alias or a constant: its docstring follows its assignment, in the
    # module that defines it, which may be a private one it is imported from.
    module_path, _, name = path.rpartition(".")
    package = module_path.split(".")[0]
    for module in [resolve(module_path), *list(sys.modules.values())]:
        if (
            isinstance(module, types.ModuleType)
            and module.__name__.split(".")[0] == package
            and getattr(module, name, None) is obj
        ):
            found = attribute_docstrings(module).get(name)
            if found:
                return found
    return ""


def public_members(obj: Any) -> Iterator[tuple[str, Any]]:
    """The public methods and properties a class defines itself.

    Or one of its bases in this project defines (`DsqlLocal`'s controls).
    """
    if not isinstance(obj, type):
        return
    own = [c for c in obj.__mro__ if c.__module__.split(".")[0] in PACKAGES]
    members = {name: value for c in reversed(own) for name, value in vars(c).items()}
    for name, value in members.items():
        if name.startswith("_"):
            continue
        member = value
        if isinstance(value, (classmethod, staticmethod)):
            member = value.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            yield name, member


def all_docstrings() -> dict[str, str]:
    """Docstrings of every documented object and of its public members."""
    docs = {}
    for path, obj in documented().items():
        docs[path] = docstring_of(path, obj)
        for name, member in public_members(obj):
            docs[f"{path}.{name}"] = own_docstring(member)
    return docs


def test_every_exported_name_is_in_the_reference() -> None:
    objects = documented()
    rendered = {path.rsplit(".", 1)[-1] for path in objects}
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            if name in NOT_OBJECTS:
                continue
            if name not in rendered:
                missing.append(f"{module_name}.{name}")
    assert missing == [], f"not in docs/api/: {missing}"


def test_every_documented_name_has_a_docstring() -> None:
    empty = [path for path, obj in documented().items() if not docstring_of(path, obj)]
    assert empty == [], f"no docstring of their own: {empty}"


def test_retry_options_documents_each_key() -> None:
    from dsql_psycopg.typing import RetryOptions  # noqa: PLC0415

    keys = attribute_docstrings(RetryOptions)
    undocumented = [key for key in RetryOptions.__annotations__ if not keys.get(key)]
    assert undocumented == [], undocumented


def test_docstrings_are_markdown_for_mkdocstrings() -> None:
    problems = []
    for path, doc in all_docstrings().items():
        text = inspect.cleandoc(doc)
        for line in text.splitlines():
            if re.search(r"\S::\s*$", line):
                problems.append(f"{path}: reST literal block: {line.strip()!r}")
        if "dsql." in re.sub(r"dsql\.[a-z0-9-]+\.on\.aws", "", text) and (
            "import dsql_psycopg as dsql" not in text
        ):
            problems.append(f"{path}: uses a dsql. alias it does not import")
        if "```" in text and "```python" not in text and "```console" not in text:
            problems.append(f"{path}: a code fence without a language")
    assert problems == [], "\n".join(problems)


def docstring_samples(kind: str = "script") -> list[tuple[str, str]]:
    """The ``python`` blocks of the docstrings: scripts, or pytest modules."""
    samples = []
    for path, doc in sorted(all_docstrings().items()):
        text = inspect.cleandoc(doc)
        for match in FENCE.finditer(text):
            marker = match["marker"]
            if marker is not None and marker != "pytest":
                assert marker.startswith("skip ("), path
                continue
            if (marker == "pytest") == (kind == "pytest"):
                samples.append((path, textwrap.dedent(match["code"])))
    return samples


def test_some_docstrings_have_examples() -> None:
    assert len(docstring_samples()) >= 8
    assert len(docstring_samples("pytest")) >= 2


def test_docstring_test_modules_pass(tmp_path: Path) -> None:
    for n, (path, code) in enumerate(docstring_samples("pytest")):
        module = tmp_path / f"test_docstring_{n}.py"
        module.write_text(code)
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
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{path}\n{done.stdout}{done.stderr}"
        assert " passed" in done.stdout, path


RUNNER = """
import json, sys

with open(sys.argv[1]) as f:
    blocks = json.load(f)
for sample in blocks:
    namespace = {"__name__": "__main__"}
    exec(compile(sample["code"], sample["path"], "exec"), namespace)
"""


def test_docstring_examples_run(
    dsql_local: DsqlLocal, dsql_schema: str, tmp_path: Path
) -> None:
    dsql_local.create_role("app")
    blocks = [
        {"path": path, "code": code.replace(PLACEHOLDER, dsql_local.cluster_id)}
        for path, code in docstring_samples()
    ]
    (tmp_path / "samples.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = dict(os.environ)
    env.update(
        PGHOST=f"{dsql_local.cluster_id}.dsql.{dsql_local.region}.on.aws",
        PGHOSTADDR="127.0.0.1",
        PGPORT=str(dsql_local.port),
        PGSSLROOTCERT=dsql_local.ca_file,
        PGOPTIONS=f"-c search_path={dsql_schema}",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "runner.py", "samples.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def options(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= options(sub)
        found.update(o for o in action.option_strings if o not in ("-h", "--help"))
    return found


def test_every_command_line_option_is_in_the_reference() -> None:
    from dsql_local.__main__ import _parser  # noqa: PLC0415
    from dsql_psycopg.cli import build_parser  # noqa: PLC0415

    page = api_text(API / "cli.md")
    missing = sorted(
        option
        for option in options(build_parser()) | options(_parser())
        if f"`{option}`" not in page
    )
    assert missing == [], f"not in docs/api/cli.md: {missing}"


def test_every_pytest_option_is_in_the_reference(
    pytestconfig: pytest.Config,
) -> None:
    group = pytestconfig.pluginmanager.get_plugin("dsql_local")
    assert group is not None
    parser = argparse.ArgumentParser()

    class Group:
        def addoption(self, *names: str, **kwargs: Any) -> None:
            parser.add_argument(*names, **kwargs)

    class Parser:
        def getgroup(self, *args: Any, **kwargs: Any) -> Group:
            return Group()

    group.pytest_addoption(Parser())
    page = api_text(API / "pytest.md")
    missing = sorted(o for o in options(parser) if f"`{o}" not in page)
    assert missing == [], f"not in docs/api/pytest.md: {missing}"


def test_signature_defaults_are_the_shared_constants() -> None:
    """Defaults are written as values, so that the reference shows them; they
    are the figures the command line and the pytest plugin use too."""
    from dsql_local import _defaults  # noqa: PLC0415
    from dsql_psycopg.contrib.sqlalchemy import (  # noqa: PLC0415
        DEFAULT_POOL_RECYCLE,
        create_engine,
    )

    local = inspect.signature(DsqlLocal).parameters
    assert local["region"].default == _defaults.REGION
    assert local["max_connection_age"].default == _defaults.MAX_CONNECTION_AGE
    assert local["clock_skew"].default == _defaults.CLOCK_SKEW
    assert local["max_connections"].default == _defaults.MAX_CONNECTIONS
    assert local["connection_rate"].default == _defaults.CONNECTION_RATE
    assert local["connection_burst"].default == _defaults.CONNECTION_BURST
    engine = inspect.signature(create_engine).parameters
    assert engine["pool_recycle"].default == DEFAULT_POOL_RECYCLE
    from dsql_psycopg.pool import DEFAULT_MAX_LIFETIME, create_pool  # noqa: PLC0415

    pool = inspect.signature(create_pool).parameters
    assert pool["max_lifetime"].default == DEFAULT_MAX_LIFETIME
    from dsql_psycopg import create_async_pool  # noqa: PLC0415
    from dsql_psycopg.contrib.sqlalchemy import create_async_engine  # noqa: PLC0415

    async_pool = inspect.signature(create_async_pool).parameters
    assert async_pool["max_lifetime"].default == DEFAULT_MAX_LIFETIME
    async_engine = inspect.signature(create_async_engine).parameters
    assert async_engine["pool_recycle"].default == DEFAULT_POOL_RECYCLE


# Defaults that stand for "nothing given", not a value a caller would set.
SENTINELS = frozenset({"NOTHING"})


def constant_defaults(obj: Any) -> list[str]:
    """Defaults written as names (``DEFAULT_X``), which the reference would
    show as the name, not the value."""
    target = obj.__init__ if isinstance(obj, type) and "__init__" in vars(obj) else obj
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        defaults: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defaults = [*node.args.defaults, *node.args.kw_defaults]
        elif isinstance(node, ast.ClassDef):
            defaults = [
                item.value for item in node.body if isinstance(item, ast.AnnAssign)
            ]
        found += [
            ast.unparse(d)
            for d in defaults
            if (isinstance(d, ast.Name) and d.id.isupper())
            or (
                isinstance(d, ast.Attribute)
                and d.attr.isupper()
                and d.attr not in SENTINELS
            )
        ]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            break  # the object itself, not what is nested in it
    return found


def test_signature_defaults_are_values_not_names() -> None:
    problems = {
        path: names
        for path, obj in documented().items()
        if callable(obj) and (names := constant_defaults(obj))
    }
    assert problems == {}, problems
