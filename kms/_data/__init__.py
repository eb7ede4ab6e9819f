"""The files the KMS reads at run time that are not its code: HSM profiles and the schema.

Their source is the repository's top-level ``hsm_profiles/`` and ``schema/`` (the Alembic
migrations, ``env.py`` among them, and the JSON Schemas of ``schema/formats/``). ``setup.py``
maps those folders into this package when a wheel is built (``kms/_data/hsm_profiles``,
``kms/_data/schema``), so an installed ``kms`` finds them with no checkout and from any working
directory. An editable install (``pip install -e .``) and a bare checkout hold no copy: there the
repository's own folders, beside the ``kms`` package, are used, so an edit to a profile or a new
migration takes effect without a reinstall.

Nothing imports these folders as Python packages: Alembic loads ``env.py`` and ``versions/*.py``
by path, and the profiles are TOML.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib.resources import as_file, files
from pathlib import Path

#: The data folders, by name: the same name in the repository and in this package.
FOLDERS = ("hsm_profiles", "schema")

_CHECKOUT = Path(__file__).resolve().parents[2]
# Installed by pip, the folders are real directories and as_file hands them over as they are. A
# package imported from a zip file (never what pip makes; Python 3.12 or later) has them extracted
# once per process, for Alembic, which needs a real directory; the copies are removed at exit.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def data_path(name: str) -> Path:
    """The real directory of data folder ``name``: the installed copy, else the checkout's.

    When neither exists, the installed location is returned all the same, so the caller's own
    "not found (looked for ...)" error names where an installed KMS looks.
    """
    if name not in FOLDERS:
        raise ValueError(f"unknown data folder {name!r}")
    packaged = files(__name__).joinpath(name)
    if packaged.is_dir():
        return _extracted.enter_context(as_file(packaged))
    checkout = _CHECKOUT / name
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / name
