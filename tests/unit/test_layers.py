"""docs/architecture.md section 3: who may import what.

A test instead of a linter plug-in, same effect.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KMS = Path(__file__).resolve().parents[2] / "kms"

#: top-level module -> the only package under kms/ allowed to import it (None: nowhere in kms/)
RESTRICTED = {
    "pkcs11": "kms/hsm",
    "sqlalchemy": "kms/db",
    "alembic": "kms/db",
    "gurux_dlms": None,
    "dlms_cosem": None,
}
PURE = "kms/dlms"  # bytes in, bytes out: no token, no database, no I/O libraries


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
            if node.module.startswith("kms."):
                names.add(node.module)
    return names


SOURCES = sorted(KMS.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(KMS.parent)))
def test_restricted_libraries_stay_in_their_layer(path: Path) -> None:
    where = str(path.relative_to(KMS.parent))
    for module in _imports(path):
        if module in RESTRICTED:
            home = RESTRICTED[module]
            assert home is not None and where.startswith(home), f"{where} imports {module}"


@pytest.mark.parametrize("path", sorted((KMS / "dlms").rglob("*.py")), ids=lambda p: p.name)
def test_dlms_layer_is_pure(path: Path) -> None:
    imported = _imports(path)
    assert not {m for m in imported if m.startswith(("kms.hsm", "kms.db", "kms.services"))}
    assert not imported & {"os", "socket", "random", "secrets", "time", "datetime"}


def test_the_scan_sees_the_adapter_import() -> None:
    """Guard against a scan that finds nothing: the adapter itself must show up."""
    assert "pkcs11" in _imports(KMS / "hsm" / "adapter.py")
    assert "sqlalchemy" in _imports(KMS / "db" / "session.py")


DOMAINS = sorted(
    p.name for p in (KMS / "services").iterdir() if p.is_dir() and p.name != "__pycache__"
)


@pytest.mark.parametrize(
    "path",
    sorted((KMS / "services").rglob("*.py")),
    ids=lambda p: str(p.relative_to(KMS.parent)),
)
def test_a_domain_imports_only_common_among_the_services(path: Path) -> None:
    """Each domain package under kms.services (provisioning, hes, pki, ...) reaches another
    domain only through kms.services.common, so that, say, an HLS handshake never pulls in the
    M-of-N approval code; common itself imports no domain."""
    parts = path.relative_to(KMS / "services").parts
    if len(parts) < 2:
        return  # kms/services/__init__.py and the composition root may import every domain
    own = parts[0]
    for module in _imports(path):
        if not module.startswith("kms.services."):
            continue
        domain = module.split(".")[2]
        allowed = {own} if own == "common" else {own, "common"}
        assert domain in allowed, f"{path.relative_to(KMS.parent)} imports {module}"


def test_the_services_are_grouped_by_domain() -> None:
    assert {"common", "hes", "pki", "provisioning"} <= set(DOMAINS)
    # Beside the domains: the composition root and the words a front end speaks to it in.
    beside = {"__init__.py", "root.py", "vocabulary.py"}
    flat = [p.name for p in (KMS / "services").glob("*.py") if p.name not in beside]
    assert flat == [], f"use cases outside a domain package: {flat}"


#: The CLI modules that reach the KMS only through the services (issue 10, section 2). The PKI
#: modules join when they are converted; then the rule covers all of kms/cli.
THIN_CLI = [
    "apdu",
    "association",
    "hls",
    "signing",
    "key_agreement",
    "provision",
    "meter",
    "transport_key",
    "admin",
    "audit",
    "main",
    "config",
    "entity",
    "status",
]
CLI_MAY_IMPORT = ("kms.services", "kms.errors", "kms.config", "kms.cli")


@pytest.mark.parametrize("name", THIN_CLI)
def test_the_cli_imports_only_the_services(name: str) -> None:
    """A command parses, calls one service method through ``ctx.services`` and prints: it never
    opens the token or the database, nor a transaction, itself."""
    path = KMS / "cli" / f"{name}.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    kms_modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            kms_modules.update(a.name for a in node.names if a.name.startswith("kms."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kms."):
            kms_modules.add(str(node.module))
    assert kms_modules, f"the scan found no kms import in {path.name}"
    wrong = sorted(
        m for m in kms_modules if not any(m == a or m.startswith(a + ".") for a in CLI_MAY_IMPORT)
    )
    assert wrong == [], f"kms/cli/{name}.py imports {wrong}"
