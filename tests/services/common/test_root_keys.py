"""The transport-key ceremony never leaves a half-write it cannot recover from."""

from __future__ import annotations

import pytest

from kms.db import RootKeyPurpose
from kms.db import repository as repo
from kms.errors import ConflictError
from kms.keystore import hierarchy
from tests.kms_fixtures import Kms

VALUE = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")


def _interrupted_import(kms: Kms, label: str) -> None:
    """The token object is made, then the transaction fails: the row is rolled back."""
    with pytest.raises(RuntimeError), kms.db.begin() as session:
        hierarchy.create_transport_key(kms.hsm, session, label, VALUE, 16)
        raise RuntimeError("the database went away before commit")


def test_the_same_key_file_adopts_what_an_interrupted_import_left_in_the_token(kms: Kms) -> None:
    _interrupted_import(kms, "vendor-x")
    with kms.db.begin() as session:
        assert repo.root_key_by_label(session, "vendor-x") is None
        row = hierarchy.create_transport_key(kms.hsm, session, "vendor-x", VALUE, 16)
        assert (row.purpose, row.algorithm) == (RootKeyPurpose.TRANSPORT, "AES-128")


def test_another_key_under_an_orphaned_label_is_refused(kms: Kms) -> None:
    _interrupted_import(kms, "vendor-y")
    with pytest.raises(ConflictError, match="not the key in this file"), kms.db.begin() as s:
        hierarchy.create_transport_key(kms.hsm, s, "vendor-y", bytes(16), 16)
    with pytest.raises(ConflictError, match="choose another label"), kms.db.begin() as s:
        hierarchy.create_transport_key(kms.hsm, s, "vendor-y", None, 16)
    with kms.db.begin() as session:
        assert repo.root_key_by_label(session, "vendor-y") is None


def test_a_recorded_label_is_never_reused(kms: Kms) -> None:
    with pytest.raises(ConflictError, match="never reused"), kms.db.begin() as session:
        hierarchy.create_transport_key(kms.hsm, session, "vendor-aes128", VALUE, 16)
