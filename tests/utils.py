"""Test-vector loading, after pyca/cryptography's ``tests/utils.py``.

Every vector file under ``tests/vectors/`` is read through :func:`load_vectors_from_file` with a
loader; the NIST ``name = value`` block format is read by :func:`load_nist_vectors`. Provenance of
each file is in ``tests/vectors/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = ["VECTORS_DIR", "load_nist_vectors", "load_vectors_from_file"]

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"

T = TypeVar("T")


def load_vectors_from_file(path: str | Path, loader: Callable[[IO[str]], T]) -> T:
    """Open a vector file and hand it to ``loader``.

    A relative ``path`` is taken from ``tests/vectors/`` (``"rfc3394/section4.txt"``), so tests
    do not depend on the working directory.
    """
    full = Path(path)
    if not full.is_absolute():
        full = VECTORS_DIR / full
    with full.open(encoding="ascii") as vector_file:
        return loader(vector_file)


def load_nist_vectors(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Parse NIST ``name = value`` blocks into one dict per case.

    ``COUNT = n`` starts a case; other names are lower-cased keys holding the value as text (hex
    stays text: tests call ``bytes.fromhex``). A bare ``FAIL`` line sets ``"fail": True`` in the
    current case. Blank lines, ``#`` comments and ``[section]`` headers are skipped. A line that
    fits none of these raises ``ValueError`` naming its line number, so a typo in a vector file
    cannot silently drop a case.
    """
    cases: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#") or (line.startswith("[") and line.endswith("]")):
            continue
        if line == "FAIL":
            if current is None:
                raise ValueError(f"line {number}: FAIL before the first COUNT")
            current["fail"] = True
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"line {number}: expected 'name = value', got {line!r}")
        name = name.strip()
        value = value.strip()
        if name.upper() == "COUNT":
            current = {}
            cases.append(current)
            continue
        if current is None:
            raise ValueError(f"line {number}: {name!r} before the first COUNT")
        current[name.lower()] = value
    return cases
