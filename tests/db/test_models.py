"""The models' constraints hold on the migrated schema, and no column can hold a plaintext key.

Runs on whatever engine ``KMS_TEST_DATABASE`` names. Constraint violations are written through the
repository inside :meth:`kms.db.Database.begin`, which turns every SQLAlchemy error into
:class:`kms.errors.DatabaseError` and rolls the whole transaction back (docs/architecture.md,
invariant 7:
nothing is half-written). The static checks read the models *and* the migrated database, so a
column added by a migration alone is caught too.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import pytest
from sqlalchemy import Enum, LargeBinary, MetaData, create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from kms.db import (
    AssociationState,
    Database,
    Direction,
    InvocationCounter,
    KeyRole,
    KeyState,
    KeyVersion,
    Meter,
    MeterState,
    ModelBase,
    RootKey,
    RootKeyPurpose,
)
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.db.pki_models import (
    AgreementState,
    AuthorityRole,
    AuthorityState,
    CertificateKind,
    CertificateStatus,
    OfficerState,
)
from kms.errors import DatabaseError

TITLE_A = bytes.fromhex("4D4D4D0000000001")
TITLE_B = bytes.fromhex("4D4D4D0000000002")
LN_0 = bytes([0, 0, 43, 0, 0, 255])
LN_1 = bytes([0, 0, 43, 0, 1, 255])
#: Distinctive bytes standing in for a wrapped blob, so a test can search error text for them.
BLOB = bytes.fromhex("B10BB10BB10BB10BB10BB10BB10BB10BB10BB10BB10BB10B")


def _meter(title: bytes, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "system_title": title,
        "serial": "SN1",
        "manufacturer": "MMM",
        "suite": 0,
        "state": MeterState.PENDING,
        "initial_kek_label": "vendor-aes128",
        "created_at": utcnow(),
    }
    row.update(overrides)
    return row


def _key(setup_id: int, role: KeyRole = KeyRole.GUEK, version: int = 1) -> dict[str, Any]:
    return {
        "security_setup_id": setup_id,
        "role": role,
        "version": version,
        "state": KeyState.PENDING,
        "key_length": 16,
        "wrapped_key": BLOB,
        "wrapping_key_label": "kms-storage-v1",
        "wrapping_key_version": 1,
        "binding_mac": bytes(32),
        "check_value": b"\x01\x02\x03",
        "created_at": utcnow(),
    }


def _root_key(label: str, purpose: RootKeyPurpose = RootKeyPurpose.TRANSPORT) -> RootKey:
    return RootKey(
        label=label, key_id=label.encode(), purpose=purpose, version=1, algorithm="AES-128"
    )


def _setup(db: Database, titles: tuple[bytes, ...] = (TITLE_A,)) -> list[int]:
    """Meters with one setup (0.0.43.0.0.255) each; returns the setup ids."""
    with db.begin() as session:
        meter_ids = repo.insert_meters(session, [_meter(t) for t in titles])
        setup_ids = repo.insert_setups(
            session, [{"meter_id": meter_ids[t], "logical_name": LN_0} for t in titles]
        )
        return [setup_ids[(meter_ids[t], LN_0)] for t in titles]


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(text(f"SELECT count(*) FROM {table}")))  # noqa: S608 (fixed names)


# --- unique constraints -----------------------------------------------------------------------


def test_meter_system_title_is_unique(db: Database) -> None:
    with db.begin() as session:
        repo.insert_meters(session, [_meter(TITLE_A)])

    with pytest.raises(DatabaseError, match="IntegrityError") as caught, db.begin() as session:
        repo.insert_meters(session, [_meter(TITLE_B), _meter(TITLE_A, serial="other")])

    assert type(caught.value) is DatabaseError
    # The whole transaction was rolled back: the new meter B was not half-written either.
    assert _count(db, "meter") == 1
    with db.begin() as session:
        assert repo.meter_by_system_title(session, TITLE_B) is None
        stored = repo.meter_by_system_title(session, TITLE_A)
        assert stored is not None and stored.serial == "SN1"


def test_meter_system_title_is_unique_within_one_batch(db: Database) -> None:
    with pytest.raises(DatabaseError), db.begin() as session:
        repo.insert_meters(session, [_meter(TITLE_A), _meter(TITLE_A)])

    assert _count(db, "meter") == 0


def test_meter_system_title_is_unique_through_the_orm(db: Database) -> None:
    with db.begin() as session:
        repo.add(session, Meter(**_meter(TITLE_A)))

    with pytest.raises(DatabaseError), db.begin() as session:
        repo.add(session, Meter(**_meter(TITLE_A)))

    assert _count(db, "meter") == 1


def test_key_version_is_unique_per_setup_role_and_version(db: Database) -> None:
    (setup_id,) = _setup(db)
    with db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id, KeyRole.GUEK, 1)])

    with pytest.raises(DatabaseError, match="IntegrityError"), db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id, KeyRole.GBEK, 1)])  # fine alone
        repo.insert_key_versions(session, [_key(setup_id, KeyRole.GUEK, 1)])  # the duplicate

    # The GBEK row of the failed transaction was rolled back with it.
    assert _count(db, "key_version") == 1


def test_key_version_constraint_is_exactly_the_triple(db: Database) -> None:
    # Another version, another role or another setup is a different key: all of these coexist.
    setup_a, setup_b = _setup(db, (TITLE_A, TITLE_B))
    with db.begin() as session:
        repo.insert_key_versions(
            session,
            [
                _key(setup_a, KeyRole.GUEK, 1),
                _key(setup_a, KeyRole.GUEK, 2),
                _key(setup_a, KeyRole.GBEK, 1),
                _key(setup_b, KeyRole.GUEK, 1),
            ],
        )

    assert _count(db, "key_version") == 4


def test_root_key_label_is_unique(db: Database) -> None:
    with db.begin() as session:
        repo.add(session, _root_key("vendor-aes128"))

    # Not even under another purpose: a token label names one object.
    with pytest.raises(DatabaseError), db.begin() as session:
        repo.add(session, _root_key("vendor-aes128", RootKeyPurpose.STORAGE))

    assert _count(db, "root_key") == 1


def test_security_setup_is_unique_per_meter_and_logical_name(db: Database) -> None:
    (setup_id,) = _setup(db)
    with db.begin() as session:
        meter = repo.meter_by_system_title(session, TITLE_A)
        assert meter is not None
        repo.insert_setups(session, [{"meter_id": meter.id, "logical_name": LN_1}])
        meter_id = meter.id

    with pytest.raises(DatabaseError), db.begin() as session:
        repo.insert_setups(session, [{"meter_id": meter_id, "logical_name": LN_0}])

    assert _count(db, "security_setup") == 2
    assert setup_id > 0


def test_invocation_counter_is_unique_per_key_version_and_direction(db: Database) -> None:
    (setup_id,) = _setup(db)
    with db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id)])
        key_id = session.scalars(select(KeyVersion.id)).one()
        for direction in (Direction.SEND, Direction.RECEIVE):
            repo.add(
                session,
                InvocationCounter(key_version_id=key_id, direction=direction, next_free=1),
            )

    with pytest.raises(DatabaseError), db.begin() as session:
        repo.add(
            session,
            InvocationCounter(key_version_id=key_id, direction=Direction.SEND, next_free=99),
        )

    assert _count(db, "invocation_counter") == 2


def test_database_error_carries_no_stored_bytes(db: Database) -> None:
    # The driver's IntegrityError quotes the statement's parameters (here a wrapped blob); the
    # KMS's error must not, nor chain it as the visible cause (docs/architecture.md, invariant 1).
    (setup_id,) = _setup(db)
    with db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id)])

    with pytest.raises(DatabaseError) as caught, db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id)])

    error = caught.value
    for text_form in (str(error), repr(error), str(error.to_dict())):
        assert BLOB.hex() not in text_form.lower()
        assert str(BLOB) not in text_form
    assert error.__cause__ is None
    assert error.__suppress_context__


# --- foreign keys and rollback ----------------------------------------------------------------


def test_foreign_keys_are_enforced(db: Database) -> None:
    # SQLite enforces them only with PRAGMA foreign_keys=ON, which make_engine sets.
    with pytest.raises(DatabaseError), db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id=424242)])

    assert _count(db, "key_version") == 0


def test_deleting_a_meter_cascades_to_its_setups_keys_and_counters(db: Database) -> None:
    (setup_id,) = _setup(db)
    with db.begin() as session:
        repo.insert_key_versions(session, [_key(setup_id)])
        key_id = session.scalars(select(KeyVersion.id)).one()
        repo.add(
            session, InvocationCounter(key_version_id=key_id, direction=Direction.SEND, next_free=1)
        )

    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM meter"))

    for table in ("security_setup", "key_version", "invocation_counter"):
        assert _count(db, table) == 0, table


def test_begin_rolls_back_on_any_exception_and_lets_it_through(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.begin() as session:
        repo.insert_meters(session, [_meter(TITLE_A)])
        raise Boom

    assert _count(db, "meter") == 0


def test_begin_commits_on_success(db: Database) -> None:
    with db.begin() as session:
        repo.insert_meters(session, [_meter(TITLE_A)])

    assert _count(db, "meter") == 1


def test_the_per_test_transaction_keeps_commits_in_a_savepoint(db_session: Session) -> None:
    # warehouse's fixture: a commit inside the test only releases a savepoint, and a rollback
    # after a failure goes back to the last one (the outer transaction is rolled back at the end;
    # SQLite's BEGIN IMMEDIATE would make a second connection wait for it, so this test does not
    # look from outside).
    repo.insert_meters(db_session, [_meter(TITLE_A)])
    db_session.commit()
    with pytest.raises(IntegrityError):
        repo.insert_meters(db_session, [_meter(TITLE_A)])
    db_session.rollback()

    assert repo.meter_by_system_title(db_session, TITLE_A) is not None
    assert db_session.scalar(text("SELECT count(*) FROM meter")) == 1


# --- enums are stored by value, as text -------------------------------------------------------

ENUM_COLUMNS = {
    ("meter", "state"): MeterState,
    ("key_version", "role"): KeyRole,
    ("key_version", "state"): KeyState,
    ("invocation_counter", "direction"): Direction,
    ("root_key", "purpose"): RootKeyPurpose,
    ("association", "state"): AssociationState,
    ("certificate", "kind"): CertificateKind,
    ("certificate", "status"): CertificateStatus,
    ("certificate_authority", "role"): AuthorityRole,
    ("certificate_authority", "state"): AuthorityState,
    ("officer", "state"): OfficerState,
    ("key_agreement", "state"): AgreementState,
}


def test_every_enum_column_is_listed_here() -> None:
    found = {
        (table.name, column.name)
        for table in ModelBase.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Enum)
    }

    assert found == set(ENUM_COLUMNS)


@pytest.mark.parametrize(("column", "enum_cls"), ENUM_COLUMNS.items(), ids=lambda v: str(v))
def test_enum_columns_are_plain_strings_of_the_values(
    column: tuple[str, str], enum_cls: type[enum.Enum]
) -> None:
    table, name = column
    col_type = ModelBase.metadata.tables[table].columns[name].type

    assert isinstance(col_type, Enum)
    assert col_type.native_enum is False  # VARCHAR, not a PostgreSQL ENUM type
    assert col_type.enum_class is enum_cls
    assert list(col_type.enums) == [member.value for member in enum_cls]
    assert col_type.length is not None
    assert all(len(member.value) <= col_type.length for member in enum_cls)


def test_enums_are_stored_as_their_value_in_the_migrated_tables(
    db: Database, db_session: Session
) -> None:
    meter_id = repo.insert_meters(db_session, [_meter(TITLE_A, state=MeterState.ACTIVE)])[TITLE_A]
    setup_ids = repo.insert_setups(db_session, [{"meter_id": meter_id, "logical_name": LN_0}])
    setup_id = setup_ids[(meter_id, LN_0)]
    repo.insert_key_versions(db_session, [_key(setup_id, KeyRole.GAK)])
    key_id = db_session.scalars(select(KeyVersion.id)).one()
    repo.add(
        db_session,
        InvocationCounter(key_version_id=key_id, direction=Direction.RECEIVE, next_free=5),
    )
    repo.add(db_session, _root_key("kms-binding-v1", RootKeyPurpose.BINDING))

    def raw(sql: str) -> Any:
        return db_session.execute(text(sql)).one()

    assert raw("SELECT state FROM meter") == ("ACTIVE",)
    assert raw("SELECT role, state FROM key_version") == ("GAK", "PENDING")
    assert raw("SELECT direction FROM invocation_counter") == ("RECEIVE",)
    assert raw("SELECT purpose FROM root_key") == ("BINDING",)
    assert all(isinstance(v, str) for v in raw("SELECT role, state FROM key_version"))


def test_a_raw_value_reads_back_as_the_enum_member(db_session: Session) -> None:
    db_session.execute(
        text(
            "INSERT INTO meter (system_title, suite, state, initial_kek_label, created_at)"
            " VALUES (:title, 0, 'RETIRED', 'x', CURRENT_TIMESTAMP)"
        ),
        {"title": TITLE_A},
    )

    meter = db_session.scalars(select(Meter)).one()

    assert meter.state is MeterState.RETIRED


class _Colour(enum.Enum):
    # Names and values differ, unlike the KMS's enums, so value-versus-name storage shows.
    RED = "red-value"
    GREEN = "green-value"


def test_the_base_type_map_stores_by_value_not_by_name() -> None:
    # The KMS enums have value == name, which cannot tell the two apart; this throwaway model,
    # on its own metadata with ModelBase's type_annotation_map, can. ModelBase is not touched.
    class Base(DeclarativeBase):
        metadata = MetaData()
        type_annotation_map = ModelBase.type_annotation_map

    class Thing(Base):
        __tablename__ = "thing"
        id: Mapped[int] = mapped_column(primary_key=True)
        colour: Mapped[_Colour]

    engine = create_engine("sqlite://")
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Thing(colour=_Colour.RED))
            session.commit()
            assert session.execute(text("SELECT colour FROM thing")).scalar_one() == "red-value"
            assert session.scalars(select(Thing.colour)).one() is _Colour.RED
    finally:
        engine.dispose()
    assert "thing" not in ModelBase.metadata.tables


# --- no column can hold a plaintext key -------------------------------------------------------

#: Words that would name key material in the clear, matched against the ``_``-separated parts of
#: a column name.
SUSPECT_WORDS = frozenset(
    {"value", "plaintext", "cleartext", "plain", "clear", "raw", "secret", "key", "keys", "pin",
     "password", "material", "bytes", "unwrapped", "ak", "kek", "ek", "guek", "gbek", "gak"}
)  # fmt: skip
#: Every column whose name holds one of those words, and why it holds no key.
ALLOWED = {
    ("key_version", "wrapped_key"): "RFC 3394 wrap under the storage key, never plaintext",
    ("key_version", "key_length"): "an integer, 16 or 32",
    ("key_version", "wrapping_key_label"): "a token label",
    ("key_version", "wrapping_key_version"): "an integer",
    ("key_version", "check_value"): "3 bytes of AES-ECB(key, 0), the token's CKA_CHECK_VALUE",
    ("root_key", "key_id"): "the token's CKA_ID",
    ("root_key", "check_value"): "3 bytes of AES-ECB(key, 0)",
    ("audit_checkpoint", "key_label"): "a token label",
    ("meter", "initial_kek_label"): "a token label",
    ("invocation_counter", "key_version_id"): "a foreign key",
    ("association", "wrapped_key"): "RFC 3394 wrap of the dedicated key under the storage key",
    ("association", "key_length"): "an integer, 16 or 32",
    ("association", "wrapping_key_label"): "a token label",
    ("association", "wrapping_key_version"): "an integer",
    ("certificate", "key_label"): "a token label (the KMS's own end entities)",
    ("certificate_authority", "key_label"): "a token label (the CA's private key)",
    ("officer", "public_key"): "an officer's public key (SubjectPublicKeyInfo)",
    ("officer", "key_fingerprint"): "SHA-256 of the officer's public key",
}
#: Every binary column, and what it holds. A new one must be reviewed and added here.
BINARY_COLUMNS = {
    ("meter", "system_title"): 8,
    ("security_setup", "logical_name"): 6,
    ("key_version", "wrapped_key"): None,
    ("key_version", "binding_mac"): None,
    ("key_version", "check_value"): 3,
    ("root_key", "key_id"): None,
    ("root_key", "check_value"): 3,
    ("audit_event", "prev_hash"): 32,
    ("audit_event", "hash"): 32,
    ("audit_checkpoint", "head_hash"): 32,
    ("audit_checkpoint", "signature"): None,
    ("association", "wrapped_key"): None,
    ("association", "binding_mac"): None,
    ("certificate", "system_title"): 8,
    ("certificate", "der"): None,
    ("officer", "public_key"): None,
    ("approval", "signature"): None,
}


def _suspect(name: str) -> bool:
    parts = set(re.split(r"[_\W]+", name.lower()))
    return bool(parts & SUSPECT_WORDS) or name.lower() in {"value", "plaintext", "key"}


def _model_columns() -> dict[tuple[str, str], Any]:
    return {
        (table.name, column.name): column
        for table in ModelBase.metadata.tables.values()
        for column in table.columns
    }


def test_no_model_column_is_named_like_plaintext_key_material() -> None:
    suspects = {where for where in _model_columns() if _suspect(where[1])}

    assert suspects - set(ALLOWED) == set(), "a column name suggests plaintext key material"
    assert set(ALLOWED) <= suspects, "ALLOWED lists a column that no longer exists"


def test_no_column_is_called_value_plaintext_or_key() -> None:
    names = {name for _table, name in _model_columns()}

    assert not names & {"value", "plaintext", "key", "secret", "key_value", "raw_key"}


def test_binary_columns_are_exactly_the_reviewed_ones() -> None:
    binary = {
        where: column.type.length
        for where, column in _model_columns().items()
        if isinstance(column.type, LargeBinary)
    }

    assert binary == BINARY_COLUMNS


def test_key_version_stores_only_wrapped_key_binding_mac_and_check_value() -> None:
    table = ModelBase.metadata.tables["key_version"]
    binary = {c.name for c in table.columns if isinstance(c.type, LargeBinary)}

    assert binary == {"wrapped_key", "binding_mac", "check_value"}
    # A check value is 3 bytes: it cannot hold a 16- or 32-byte key.
    check_value = table.columns["check_value"].type
    assert isinstance(check_value, LargeBinary) and check_value.length == 3
    assert "never plaintext" in (table.columns["wrapped_key"].comment or "")


def test_the_migrated_database_has_no_other_columns(db: Database) -> None:
    # What the migrations built, not only what the models say (the drift test backs this up).
    inspector = inspect(db.engine)
    reflected = {
        (table, column["name"])
        for table in ModelBase.metadata.tables
        for column in inspector.get_columns(table)
    }

    assert reflected == set(_model_columns())
    assert {where for where in reflected if _suspect(where[1])} == set(ALLOWED)
