"""association: dedicated keys of application associations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 23:12:13.642234
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "association",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "handle",
            sa.String(length=32),
            nullable=False,
            comment="public name of the association (random, hex)",
        ),
        sa.Column("security_setup_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("OPEN", "CLOSED", name="associationstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("key_length", sa.Integer(), nullable=False, comment="16 or 32 bytes"),
        sa.Column(
            "wrapped_key",
            sa.LargeBinary(),
            nullable=True,
            comment="header || RFC 3394 wrap under the storage key; wiped when the association closes",
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
            nullable=True,
            comment="HMAC-SHA256 in the token over (system title, logical name, handle, blob)",
        ),
        sa.Column(
            "next_send_ic",
            sa.BigInteger(),
            nullable=False,
            comment="first IC under the dedicated key not yet reserved",
        ),
        sa.Column(
            "receive_floor",
            sa.BigInteger(),
            nullable=False,
            comment="lowest IC acceptable from the meter under the dedicated key",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["security_setup_id"],
            ["security_setup.id"],
            name=op.f("fk_association_security_setup_id_security_setup"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_association")),
        sa.UniqueConstraint("handle", name=op.f("uq_association_handle")),
    )


def downgrade() -> None:
    op.drop_table("association")
