"""initial schema: meters, key versions, counters, root keys, audit

Revision ID: 0001
Revises:
Create Date: 2026-11-24 13:11:20.048625
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, comment="last audit_event.seq covered"),
        sa.Column("head_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_label", sa.String(), nullable=False),
        sa.Column(
            "signature", sa.LargeBinary(), nullable=False, comment="raw ECDSA r||s (P-384, SHA-384)"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
    )
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "details", sa.Text(), nullable=False, comment="canonical JSON; metadata only, no key"
        ),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_subject", ["subject"], unique=False)

    op.create_table(
        "meter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "system_title",
            sa.LargeBinary(length=8),
            nullable=False,
            comment="8-byte DLMS system title (FLAG id + serial part)",
        ),
        sa.Column("serial", sa.String(), nullable=True),
        sa.Column(
            "manufacturer", sa.String(length=3), nullable=True, comment="FLAG id, if printable"
        ),
        sa.Column("suite", sa.Integer(), nullable=False, comment="DLMS security suite 0, 1 or 2"),
        sa.Column(
            "state",
            sa.Enum(
                "PENDING", "ACTIVE", "RETIRED", name="meterstate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column(
            "initial_kek_label",
            sa.String(),
            nullable=False,
            comment="label of the transport key the first key_transfer was wrapped under",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter")),
        sa.UniqueConstraint("system_title", name=op.f("uq_meter_system_title")),
    )
    op.create_table(
        "root_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(), nullable=False, comment="CKA_LABEL in the token"),
        sa.Column("key_id", sa.LargeBinary(), nullable=False, comment="CKA_ID in the token"),
        sa.Column(
            "purpose",
            sa.Enum(
                "STORAGE",
                "BINDING",
                "AUDIT",
                "TRANSPORT",
                name="rootkeypurpose",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column(
            "check_value",
            sa.LargeBinary(length=3),
            nullable=True,
            comment="CKA_CHECK_VALUE of AES keys, for ceremonies to compare",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_root_key")),
        sa.UniqueConstraint("label", name=op.f("uq_root_key_label")),
        sa.UniqueConstraint(
            "purpose", "version", "label", name=op.f("uq_root_key_purpose_version_label")
        ),
    )
    op.create_table(
        "security_setup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meter_id", sa.Integer(), nullable=False),
        sa.Column(
            "logical_name", sa.LargeBinary(length=6), nullable=False, comment="OBIS 0.0.43.0.e.255"
        ),
        sa.Column("client_sap", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"],
            ["meter.id"],
            name=op.f("fk_security_setup_meter_id_meter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_setup")),
        sa.UniqueConstraint(
            "meter_id", "logical_name", name=op.f("uq_security_setup_meter_id_logical_name")
        ),
    )
    op.create_table(
        "key_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("security_setup_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum("KEK", "GUEK", "GBEK", "GAK", name="keyrole", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "PENDING",
                "ACTIVE",
                "RETIRED",
                "REVOKED",
                "DESTROYED",
                name="keystate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("key_length", sa.Integer(), nullable=False, comment="16 or 32 bytes"),
        sa.Column(
            "wrapped_key",
            sa.LargeBinary(),
            nullable=False,
            comment="header || RFC 3394 wrap under the storage key; never plaintext",
        ),
        sa.Column(
            "wrapping_key_label",
            sa.String(),
            nullable=False,
            comment="token label of the storage key",
        ),
        sa.Column("wrapping_key_version", sa.Integer(), nullable=False),
        sa.Column(
            "binding_mac",
            sa.LargeBinary(),
            nullable=False,
            comment="HMAC-SHA256 in the token over (system title, logical name, role, version, blob)",
        ),
        sa.Column(
            "check_value",
            sa.LargeBinary(length=3),
            nullable=False,
            comment="CKA_CHECK_VALUE from the token: AES-ECB(key, 0^128)[:3]",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["security_setup_id"],
            ["security_setup.id"],
            name=op.f("fk_key_version_security_setup_id_security_setup"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_version")),
        sa.UniqueConstraint(
            "security_setup_id",
            "role",
            "version",
            name=op.f("uq_key_version_security_setup_id_role_version"),
        ),
    )
    op.create_table(
        "invocation_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_version_id", sa.Integer(), nullable=False),
        sa.Column(
            "direction",
            sa.Enum("SEND", "RECEIVE", name="direction", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "next_free",
            sa.BigInteger(),
            nullable=False,
            comment="SEND: first IC not yet reserved; RECEIVE: lowest acceptable IC",
        ),
        sa.ForeignKeyConstraint(
            ["key_version_id"],
            ["key_version.id"],
            name=op.f("fk_invocation_counter_key_version_id_key_version"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invocation_counter")),
        sa.UniqueConstraint(
            "key_version_id",
            "direction",
            name=op.f("uq_invocation_counter_key_version_id_direction"),
        ),
    )


def downgrade() -> None:
    op.drop_table("invocation_counter")
    op.drop_table("key_version")
    op.drop_table("security_setup")
    op.drop_table("root_key")
    op.drop_table("meter")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_subject")

    op.drop_table("audit_event")
    op.drop_table("audit_checkpoint")
