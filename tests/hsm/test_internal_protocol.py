"""No module of ``kms.hsm`` reads another's private state (issue 10).

The token session keeps its lock, login, retries and handles to itself; the adapter's operations
and the modules beside it (ecdh, trusted_wrap, gcm) reach them through the public members of
:class:`kms.hsm._token_access.TokenAccess` only. Underscore names are Python's only privacy, so
the rule is checked on the source, as tests/unit/test_layers.py checks imports: a module may
read an underscore attribute only if it defines that name itself (a method, a class-body or
``__slots__`` name, or an attribute it assigns on ``self`` or ``cls``), and may import no
underscore name but a module of its own package. A subclass reading its base class's private
state in another module breaks the rule too: that is the adapter reaching into the session.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HSM = ROOT / "kms" / "hsm"
SOURCES = sorted(HSM.glob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.AST) -> set[str]:
    """The names a module defines: everything it binds, and the attributes of its own objects."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return names


def _is_module(package: str, name: str) -> bool:
    """Whether ``from package import name`` imports a module (``kms.hsm._errors``)."""
    base = ROOT.joinpath(*package.split("."), name)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def foreign_private_names(source: str) -> list[str]:
    """Each underscore attribute read (or written) that ``source`` does not define, and each
    underscore name it imports that is not a module, as ``line N: text``."""
    tree = ast.parse(source)
    defined = _defined(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in defined:
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            package = node.module or ""
            found.extend(
                (node.lineno, f"from {package} import {alias.name}")
                for alias in node.names
                if _private(alias.name) and (node.level or not _is_module(package, alias.name))
            )
    return [f"line {line}: {text}" for line, text in sorted(found)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_module_of_kms_hsm_reads_private_state_it_did_not_define(path: Path) -> None:
    found = foreign_private_names(path.read_text(encoding="utf-8"))
    assert not found, f"kms/hsm/{path.name} reaches into another's private state: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "def f(hsm):\n    return hsm._session.get_objects({})\n",
        "def f(adapter):\n    with adapter._lock:\n        pass\n",
        "def f(key):\n    return key._generation\n",
        "def f(hsm):\n    hsm._call = None\n",
        "from kms.hsm.session import _TOKEN_LOCK\n",
        # A subclass in another module reading its base's state: the adapter on the session.
        "class Hsm(TokenSession):\n    def f(self):\n        return self._session\n",
    ],
)
def test_the_rule_catches_a_reach_into_private_state(source: str) -> None:
    assert len(foreign_private_names(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "class A:\n    def __init__(self):\n        self._x = 1\n    def f(self, other):\n"
        "        return self._x + other._x\n",
        "class A:\n    __slots__ = ('_x',)\n    def f(self):\n        return self._x\n",
        "class A:\n    _x: int\n    def _f(self):\n        return self._x\n"
        "    def g(self):\n        return self._f()\n",
        "from kms.hsm import _errors\nfrom kms.hsm._errors import translate\n",
        "def f(obj):\n    return obj.__class__.__mro__\n",
    ],
)
def test_the_rule_lets_a_module_use_what_it_defines(source: str) -> None:
    assert foreign_private_names(source) == []


def test_the_scan_sees_the_session_and_its_users() -> None:
    """Guard against a scan that finds nothing: the modules the rule is about are scanned, and
    the session's own private state is what it defines."""
    names = {p.name for p in SOURCES}
    assert {"session.py", "adapter.py", "ecdh.py", "trusted_wrap.py", "gcm.py"} <= names
    defined = _defined(ast.parse((HSM / "session.py").read_text(encoding="utf-8")))
    assert {"_session", "_generation", "_handles", "_token", "_object"} <= defined
