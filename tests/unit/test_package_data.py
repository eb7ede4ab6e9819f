"""The HSM profiles and the schema are found wherever the KMS runs from: the installed package's
copy (a wheel; ``scripts/wheel-check.sh`` proves that end to end), else the checkout's."""

from __future__ import annotations

from pathlib import Path

import pytest

import kms._data
from kms._data import data_path
from kms.db.migrate import SCHEMA_DIR
from kms.hsm.profile import PROFILE_DIR

REPO = Path(__file__).resolve().parents[2]


def test_a_checkout_uses_the_repositorys_own_folders() -> None:
    # This run is an editable install or a bare checkout: the package holds no copy.
    assert PROFILE_DIR == REPO / "hsm_profiles"
    assert SCHEMA_DIR == REPO / "schema"
    assert (PROFILE_DIR / "softhsm2.toml").is_file()
    assert (SCHEMA_DIR / "env.py").is_file() and any((SCHEMA_DIR / "versions").glob("0001_*.py"))


def test_the_installed_copy_wins_over_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schema").mkdir()
    monkeypatch.setattr(kms._data, "files", lambda package: tmp_path)
    assert data_path("schema") == tmp_path / "schema"
    # A folder the installed package lacks falls back to the checkout's.
    assert data_path("hsm_profiles") == REPO / "hsm_profiles"


def test_only_the_known_folders_are_data() -> None:
    with pytest.raises(ValueError, match="unknown data folder"):
        data_path("tests")
