"""Where the package's files come from; everything else about it is in pyproject.toml.

The HSM profiles and the schema (Alembic migrations, JSON Schemas) keep their source in the
repository's top-level ``hsm_profiles/`` and ``schema/``, where developers and ``alembic -c
alembic.ini`` use them. A wheel must carry them, so every folder under them is mapped to a package
under ``kms._data`` (``schema/versions`` -> ``kms._data.schema.versions``) and shipped with its
files; :mod:`kms._data` finds them again at run time. The mapping is computed here, not listed in
pyproject.toml, because setuptools' declarative ``packages.find`` cannot add mapped folders to
the packages it finds, and a hand-written list of every ``kms`` package would go stale.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
#: Repository folder -> its package under kms._data (the same name, see kms/_data/__init__.py).
DATA_FOLDERS = ("hsm_profiles", "schema")
#: What a data folder ships besides Python files (env.py and the migrations go as modules).
DATA_FILES = ["*.toml", "*.json", "*.mako", "*.md"]


def _data_packages() -> dict[str, str]:
    """Package name -> folder (relative to this file), for each data folder and its subfolders."""
    mapped = {}
    for name in DATA_FOLDERS:
        top = ROOT / name
        folders = [top, *sorted(p for p in top.rglob("*") if p.is_dir())]
        for folder in folders:
            parts = folder.relative_to(top).parts
            if any(part == "__pycache__" or part.startswith(".") for part in parts):
                continue
            mapped[".".join(("kms._data", name, *parts))] = folder.relative_to(ROOT).as_posix()
    return mapped


DATA_PACKAGES = _data_packages()

setup(
    packages=[*find_packages(include=["kms", "kms.*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
    package_data={"kms": ["py.typed"], **dict.fromkeys(DATA_PACKAGES, DATA_FILES)},
)
