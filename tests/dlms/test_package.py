"""kms.dlms as a whole: the layer stays pure (no I/O, clock, randomness or key stores)."""

from __future__ import annotations

import ast
from pathlib import Path

import kms.dlms

PACKAGE = Path(kms.dlms.__file__).parent
FORBIDDEN = {
    "pkcs11",
    "sqlalchemy",
    "gurux_dlms",
    "dlms_cosem",
    "cryptography",
    "os",
    "io",
    "random",
    "secrets",
    "time",
    "datetime",
    "socket",
    "subprocess",
    "pathlib",
    "logging",
}
#: Pure modules outside the package: the error hierarchy, and the one zeroise.
ALLOWED_KMS = {"kms.errors", "kms.memory"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_modules_import_nothing_impure() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 6
    for module in modules:
        for name in _imports(module):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{module.name} imports {name}"
            if top == "kms":
                assert name.startswith("kms.dlms") or name in ALLOWED_KMS, (module.name, name)


def test_modules_open_with_their_standard_and_stay_small() -> None:
    for module in sorted(PACKAGE.glob("*.py")):
        text = module.read_text(encoding="utf-8")
        assert len(text.splitlines()) < 500, module.name
        docstring = ast.get_docstring(ast.parse(text))
        assert docstring, module.name
        if module.name != "__init__.py":
            first = docstring.split("\n\n")[0]
            assert any(s in first for s in ("DLMS UA 1000", "IEC 62056", "IEC 61334")), module.name
            assert "Exports" in docstring, module.name


def test_package_docstring_warns() -> None:
    assert kms.dlms.__doc__ is not None
    assert "danger" in kms.dlms.__doc__
