"""The transport-key ceremony and ``kms init`` never leave a half-write they cannot recover from:
a token object no row records is destroyed again, or adopted by the next run."""

from __future__ import annotations

import pytest
from pkcs11 import ObjectClass

from kms.config import Config
from kms.db import Database, RootKeyPurpose
from kms.db import repository as repo
from kms.errors import ConflictError, DatabaseError
from kms.hsm import Hsm, TokenKey
from kms.keystore import hierarchy
from kms.services.common.resources import Resources
from kms.services.common.root_keys import RootKeyService
from tests.kms_fixtures import Kms, refusing_inserts, token_objects

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


# --- a database that refuses the write: the ceremony takes its token object back ----------------


@pytest.mark.parametrize("table", ["root_key", "audit_event"])
@pytest.mark.parametrize("value", [VALUE, None], ids=["import", "generate"])
def test_a_ceremony_the_database_refuses_leaves_no_token_object(
    kms: Kms, table: str, value: bytes | None
) -> None:
    before = token_objects(kms.hsm)
    with refusing_inserts(kms.config.database_url, table), pytest.raises(DatabaseError):
        kms.services.root_keys.create_transport_key(
            actor="pytest", label="vendor-z", value=value, length=16
        )
    assert token_objects(kms.hsm) == before
    with kms.db.begin() as session:
        assert repo.root_key_by_label(session, "vendor-z") is None
    # Nothing stands in the way of the ceremony once the database takes writes again.
    row = kms.services.root_keys.create_transport_key(
        actor="pytest", label="vendor-z", value=value, length=16
    )
    assert row["label"] == "vendor-z"
    assert token_objects(kms.hsm) == before | {("vendor-z", str(ObjectClass.SECRET_KEY))}


def test_a_key_the_database_may_have_recorded_is_kept_for_the_next_run(
    kms: Kms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the database cannot say whether the failed commit recorded the key, the key stays:
    the same key file adopts it."""
    monkeypatch.setattr(hierarchy, "_recorded", lambda db, label: None)
    with refusing_inserts(kms.config.database_url, "root_key"), pytest.raises(DatabaseError):
        kms.services.root_keys.create_transport_key(
            actor="pytest", label="vendor-w", value=VALUE, length=16
        )
    assert kms.hsm.has_token_key(TokenKey("vendor-w"))
    monkeypatch.undo()
    row = kms.services.root_keys.create_transport_key(
        actor="pytest", label="vendor-w", value=VALUE, length=16
    )
    assert row["kcv"] == kms.hsm.check_value(TokenKey("vendor-w")).hex().upper()


def _root_keys(hsm: Hsm, db: Database, config: Config) -> RootKeyService:
    return RootKeyService(Resources(config, hsm=hsm, database=db))


def test_an_init_the_database_refuses_leaves_no_root_key_in_the_token(
    hsm: Hsm, migrated_db: Database, kms_config: Config
) -> None:
    url = str(migrated_db.url)
    assert token_objects(hsm) == set()
    for table in ("root_key", "audit_event"):
        with refusing_inserts(url, table), pytest.raises(DatabaseError):
            _root_keys(hsm, migrated_db, kms_config).initialise(actor="pytest")
        assert token_objects(hsm) == set(), f"a refused insert into {table} left an orphan"
    report = _root_keys(hsm, migrated_db, kms_config).initialise(actor="pytest")
    assert [o.action for o in report.root_keys] == ["created"] * 3


def test_init_adopts_a_root_key_a_dead_process_left_in_the_token(
    hsm: Hsm, migrated_db: Database, kms_config: Config
) -> None:
    """A process killed between the token object and the commit cannot clean up: the next
    ``kms init`` records the key it finds instead of making another."""
    hsm.create_storage_key(hierarchy.STORAGE_LABEL, hierarchy.STORAGE_LABEL.encode())
    report = _root_keys(hsm, migrated_db, kms_config).initialise(actor="pytest")
    assert [o.action for o in report.root_keys] == ["adopted", "created", "created"]
