"""The metadata database (docs/architecture.md section 4): SQLAlchemy 2.0 typed models.

No column holds plaintext key material. A key is a wrapped blob (RFC 3394 under the storage key),
the label and version of the key that wrapped it, a binding MAC computed in the token over the
row's identity, and the token's key check value. Schema changes go through Alembic migrations in
``schema/``; a test fails when these models and the migrations drift apart.
"""

from __future__ import annotations

import datetime
import enum

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kms.db.base import ModelBase, bigint, datetime_now, intpk


class MeterState(enum.Enum):
    """Where a meter is in its life; PENDING until the station confirms its keys."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"


class KeyRole(enum.Enum):
    """The Green Book key a version holds (Vault-style stable strings)."""

    KEK = "KEK"  # master key
    GUEK = "GUEK"  # global unicast encryption key
    GBEK = "GBEK"  # global broadcast encryption key
    GAK = "GAK"  # (global) authentication key
    HLS_SECRET = "HLS_SECRET"  # noqa: S105 - the name of a role: HLS mechanism 6's secret


class KeyState(enum.Enum):
    """Life cycle of one key version; a version is never overwritten."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"
    REVOKED = "REVOKED"
    DESTROYED = "DESTROYED"


class RootKeyPurpose(enum.Enum):
    """What a token object recorded in ``root_key`` is for."""

    STORAGE = "STORAGE"
    BINDING = "BINDING"
    AUDIT = "AUDIT"
    TRANSPORT = "TRANSPORT"


class AssociationState(enum.Enum):
    """Whether an application association's dedicated key may still be used."""

    OPEN = "OPEN"
    CLOSED = "CLOSED"


class Direction(enum.Enum):
    """Invocation counter direction, seen from the KMS."""

    SEND = "SEND"
    RECEIVE = "RECEIVE"


class Meter(ModelBase):
    """A meter, named by its 8-byte system title."""

    __tablename__ = "meter"

    id: Mapped[intpk]
    system_title: Mapped[bytes] = mapped_column(
        LargeBinary(8), unique=True, comment="8-byte DLMS system title (FLAG id + serial part)"
    )
    serial: Mapped[str | None]
    manufacturer: Mapped[str | None] = mapped_column(String(3), comment="FLAG id, if printable")
    suite: Mapped[int] = mapped_column(Integer, comment="DLMS security suite 0, 1 or 2")
    state: Mapped[MeterState]
    initial_kek_label: Mapped[str] = mapped_column(
        comment="label of the transport key the first key_transfer was wrapped under"
    )
    created_at: Mapped[datetime_now]
    confirmed_at: Mapped[datetime.datetime | None]

    setups: Mapped[list[SecuritySetup]] = relationship(
        back_populates="meter", order_by="SecuritySetup.logical_name"
    )


class SecuritySetup(ModelBase):
    """One security setup object (0.0.43.0.e.255) of a meter, i.e. one client association."""

    __tablename__ = "security_setup"
    __table_args__ = (UniqueConstraint("meter_id", "logical_name"),)

    id: Mapped[intpk]
    meter_id: Mapped[int] = mapped_column(ForeignKey("meter.id", ondelete="CASCADE"))
    logical_name: Mapped[bytes] = mapped_column(LargeBinary(6), comment="OBIS 0.0.43.0.e.255")
    client_sap: Mapped[int | None]

    meter: Mapped[Meter] = relationship(back_populates="setups")
    keys: Mapped[list[KeyVersion]] = relationship(
        back_populates="setup", order_by="(KeyVersion.role, KeyVersion.version)"
    )


class KeyVersion(ModelBase):
    """One version of one key of a security setup, as a wrapped, bound blob."""

    __tablename__ = "key_version"
    __table_args__ = (UniqueConstraint("security_setup_id", "role", "version"),)

    id: Mapped[intpk]
    security_setup_id: Mapped[int] = mapped_column(
        ForeignKey("security_setup.id", ondelete="CASCADE")
    )
    role: Mapped[KeyRole]
    version: Mapped[int]
    state: Mapped[KeyState]
    key_length: Mapped[int] = mapped_column(comment="16 or 32 bytes")
    wrapped_key: Mapped[bytes] = mapped_column(
        comment="header || RFC 3394 wrap under the storage key; never plaintext"
    )
    wrapping_key_label: Mapped[str] = mapped_column(comment="token label of the storage key")
    wrapping_key_version: Mapped[int]
    binding_mac: Mapped[bytes] = mapped_column(
        comment="HMAC-SHA256 in the token over (system title, logical name, role, version, blob)"
    )
    check_value: Mapped[bytes] = mapped_column(
        LargeBinary(3), comment="CKA_CHECK_VALUE from the token: AES-ECB(key, 0^128)[:3]"
    )
    created_at: Mapped[datetime_now]
    activated_at: Mapped[datetime.datetime | None]

    setup: Mapped[SecuritySetup] = relationship(back_populates="keys")


class InvocationCounter(ModelBase):
    """Next free invocation counter per key version and direction, reserved in blocks."""

    __tablename__ = "invocation_counter"
    __table_args__ = (UniqueConstraint("key_version_id", "direction"),)

    id: Mapped[intpk]
    key_version_id: Mapped[int] = mapped_column(ForeignKey("key_version.id", ondelete="CASCADE"))
    direction: Mapped[Direction]
    next_free: Mapped[bigint] = mapped_column(
        comment="SEND: first IC not yet reserved; RECEIVE: lowest acceptable IC"
    )


class Association(ModelBase):
    """An application association with a dedicated key (ded- APDUs), open across processes.

    The dedicated key was generated in the token and sent to the meter inside a ciphered
    glo-initiate-request; it is stored like every per-meter key (wrapped under the storage key,
    bound to its row) until the association closes, when the blob is wiped. Its invocation
    counters live here: the key is fresh, so they start afresh.
    """

    __tablename__ = "association"

    id: Mapped[intpk]
    handle: Mapped[str] = mapped_column(
        String(32), unique=True, comment="public name of the association (random, hex)"
    )
    security_setup_id: Mapped[int] = mapped_column(
        ForeignKey("security_setup.id", ondelete="CASCADE")
    )
    state: Mapped[AssociationState]
    key_length: Mapped[int] = mapped_column(comment="16 or 32 bytes")
    wrapped_key: Mapped[bytes | None] = mapped_column(
        comment="header || RFC 3394 wrap under the storage key; wiped when the association closes"
    )
    wrapping_key_label: Mapped[str] = mapped_column(comment="token label of the storage key")
    wrapping_key_version: Mapped[int]
    binding_mac: Mapped[bytes | None] = mapped_column(
        comment="HMAC-SHA256 in the token over (system title, logical name, handle, blob)"
    )
    next_send_ic: Mapped[bigint] = mapped_column(
        comment="first IC under the dedicated key not yet reserved"
    )
    receive_floor: Mapped[bigint] = mapped_column(
        comment="lowest IC acceptable from the meter under the dedicated key"
    )
    created_at: Mapped[datetime_now]
    closed_at: Mapped[datetime.datetime | None]

    setup: Mapped[SecuritySetup] = relationship()


class RootKey(ModelBase):
    """A token object the KMS relies on: storage, binding, audit and transport keys."""

    __tablename__ = "root_key"
    __table_args__ = (UniqueConstraint("purpose", "version", "label"),)

    id: Mapped[intpk]
    label: Mapped[str] = mapped_column(unique=True, comment="CKA_LABEL in the token")
    key_id: Mapped[bytes] = mapped_column(comment="CKA_ID in the token")
    purpose: Mapped[RootKeyPurpose]
    version: Mapped[int]
    algorithm: Mapped[str] = mapped_column(String(32))
    check_value: Mapped[bytes | None] = mapped_column(
        LargeBinary(3), comment="CKA_CHECK_VALUE of AES keys, for ceremonies to compare"
    )
    created_at: Mapped[datetime_now]


class AuditEvent(ModelBase):
    """One hash-chained audit record; ``hash`` covers ``prev_hash`` and the canonical record."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_subject", "subject"),)

    seq: Mapped[bigint] = mapped_column(primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime.datetime]
    actor: Mapped[str]
    operation: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str]
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text, comment="canonical JSON; metadata only, no key")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(ModelBase):
    """A signature, made in the token with the audit key, over the chain head at ``seq``."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[intpk]
    seq: Mapped[bigint] = mapped_column(comment="last audit_event.seq covered")
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[datetime.datetime]
    key_label: Mapped[str]
    signature: Mapped[bytes] = mapped_column(comment="raw ECDSA r||s (P-384, SHA-384)")
