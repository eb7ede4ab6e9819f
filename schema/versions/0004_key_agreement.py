"""key agreement: pending security setup method 3 exchanges

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 02:19:18.767309
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_agreement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handle", sa.String(length=32), nullable=False, comment="public name (hex)"),
        sa.Column("security_setup_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "PENDING",
                "COMPLETED",
                "CANCELLED",
                name="agreementstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "entries",
            sa.Text(),
            nullable=False,
            comment="JSON: key_id, token label of the ephemeral key pair, its public point",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["security_setup_id"],
            ["security_setup.id"],
            name=op.f("fk_key_agreement_security_setup_id_security_setup"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_agreement")),
        sa.UniqueConstraint("handle", name=op.f("uq_key_agreement_handle")),
    )


def downgrade() -> None:
    op.drop_table("key_agreement")
