"""pki: certificate authorities, certificates, officers, approvals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:51:08.310277
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "officer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "public_key",
            sa.LargeBinary(),
            nullable=False,
            comment="DER SubjectPublicKeyInfo (EC P-256/P-384)",
        ),
        sa.Column(
            "key_fingerprint",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the SubjectPublicKeyInfo, hex",
        ),
        sa.Column(
            "state",
            sa.Enum("ACTIVE", "REMOVED", name="officerstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer")),
        sa.UniqueConstraint("key_fingerprint", name=op.f("uq_officer_key_fingerprint")),
        sa.UniqueConstraint("name", name=op.f("uq_officer_name")),
    )
    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "request_id",
            sa.String(length=32),
            nullable=False,
            comment="the request's random id (hex)",
        ),
        sa.Column("ceremony", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False, comment="the request exactly as signed"),
        sa.Column(
            "signature",
            sa.LargeBinary(),
            nullable=False,
            comment="the officer's ECDSA signature (DER)",
        ),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officer.id"], name=op.f("fk_approval_officer_id_officer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval")),
        sa.UniqueConstraint(
            "request_id", "officer_id", name=op.f("uq_approval_request_id_officer_id")
        ),
    )
    op.create_table(
        "certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "serial",
            sa.String(length=40),
            nullable=False,
            comment="serialNumber as upper-case hex (random, >= 64 bits)",
        ),
        sa.Column(
            "issuer_id",
            sa.Integer(),
            nullable=True,
            comment="the issuer's certificate; NULL when self-signed",
        ),
        sa.Column(
            "kind",
            sa.Enum(
                "SIGNING",
                "KEY_AGREEMENT",
                "TLS",
                "CA",
                name="certificatekind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "subject", sa.String(), nullable=False, comment="subject DN as text, for display"
        ),
        sa.Column(
            "system_title",
            sa.LargeBinary(length=8),
            nullable=True,
            comment="end entity: the system title of its CN",
        ),
        sa.Column("meter_id", sa.Integer(), nullable=True),
        sa.Column(
            "key_label",
            sa.String(),
            nullable=True,
            comment="the KMS's own end entities and CAs: CKA_LABEL of the private key in the token",
        ),
        sa.Column(
            "curve", sa.String(length=8), nullable=False, comment="P-256 or P-384 (the subject key)"
        ),
        sa.Column("der", sa.LargeBinary(), nullable=False, comment="the certificate as issued"),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum("VALID", "REVOKED", name="certificatestatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "revocation_reason",
            sa.String(length=32),
            nullable=True,
            comment="RFC 5280 CRLReason name",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["certificate.id"], name=op.f("fk_certificate_issuer_id_certificate")
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"],
            ["meter.id"],
            name=op.f("fk_certificate_meter_id_meter"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate")),
        sa.UniqueConstraint("serial", name=op.f("uq_certificate_serial")),
    )
    op.create_index("ix_certificate_issuer_id", "certificate", ["issuer_id"], unique=False)
    op.create_index("ix_certificate_system_title", "certificate", ["system_title"], unique=False)

    op.create_table(
        "certificate_authority",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False, comment="e.g. root-v1, suite1-v2"),
        sa.Column(
            "role",
            sa.Enum("ROOT", "ISSUING", name="authorityrole", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "suite", sa.Integer(), nullable=True, comment="issuing CAs: the DLMS suite (1 or 2)"
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("curve", sa.String(length=8), nullable=False),
        sa.Column(
            "key_label",
            sa.String(),
            nullable=False,
            comment="CKA_LABEL of the private key in the token",
        ),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "ACTIVE", "RETIRED", "REVOKED", name="authoritystate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column(
            "crl_number",
            sa.BigInteger(),
            nullable=False,
            comment="the last cRLNumber this CA signed (0: none yet)",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificate.id"],
            name=op.f("fk_certificate_authority_certificate_id_certificate"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_authority")),
        sa.UniqueConstraint("certificate_id", name=op.f("uq_certificate_authority_certificate_id")),
        sa.UniqueConstraint("key_label", name=op.f("uq_certificate_authority_key_label")),
        sa.UniqueConstraint("name", name=op.f("uq_certificate_authority_name")),
    )


def downgrade() -> None:
    op.drop_table("certificate_authority")
    op.drop_index("ix_certificate_system_title", table_name="certificate")
    op.drop_index("ix_certificate_issuer_id", table_name="certificate")

    op.drop_table("certificate")
    op.drop_table("approval")
    op.drop_table("officer")
