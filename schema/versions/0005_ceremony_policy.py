"""ceremony policy and runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 02:51:39.011338
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ceremony_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "approvals", sa.Integer(), nullable=False, comment="M: approvals each ceremony needs"
        ),
        sa.Column(
            "officers", sa.Integer(), nullable=False, comment="N: officers who may be registered"
        ),
        sa.Column(
            "ca_revocation_ceremony",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="revoking a CA certificate needs M approvals",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ceremony_policy")),
    )
    op.create_table(
        "ceremony_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("ceremony", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ceremony_run")),
        sa.UniqueConstraint("request_id", name=op.f("uq_ceremony_run_request_id")),
    )


def downgrade() -> None:
    op.drop_table("ceremony_run")
    op.drop_table("ceremony_policy")
