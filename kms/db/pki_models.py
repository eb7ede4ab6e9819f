"""The PKI's metadata (docs/architecture.md section 4): certificate authorities, certificates,
officers and their ceremony approvals.

A CA's private key is a token object named by its label; only its certificate is stored here.
Certificates are kept as issued (DER) with the fields the KMS searches by pulled out beside
them; a certificate is never deleted, only revoked. An approval row is the officer's signed
statement as it was verified, kept with the audit trail that records the ceremony.
"""

from __future__ import annotations

import datetime
import enum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kms.db.base import ModelBase, datetime_now, intpk
from kms.db.models import Meter, SecuritySetup


class AuthorityRole(enum.Enum):
    """Where a CA sits: the root (P-384, self-signed) or an issuing CA of one suite."""

    ROOT = "ROOT"
    ISSUING = "ISSUING"


class AuthorityState(enum.Enum):
    """ACTIVE issues; RETIRED (rotated out) still signs CRLs for what it issued; REVOKED
    neither."""

    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"
    REVOKED = "REVOKED"


class CertificateKind(enum.Enum):
    """What a certificate certifies: the security setup's certificate_type, or a CA."""

    SIGNING = "SIGNING"  # digital signature (certificate_type 0)
    KEY_AGREEMENT = "KEY_AGREEMENT"
    TLS = "TLS"
    CA = "CA"


class CertificateStatus(enum.Enum):
    VALID = "VALID"
    REVOKED = "REVOKED"


class OfficerState(enum.Enum):
    ACTIVE = "ACTIVE"
    REMOVED = "REMOVED"


class Certificate(ModelBase):
    """A certificate the KMS issued (or its own CA certificates), as DER with search fields."""

    __tablename__ = "certificate"
    __table_args__ = (
        Index("ix_certificate_system_title", "system_title"),
        Index("ix_certificate_issuer_id", "issuer_id"),
    )

    id: Mapped[intpk]
    serial: Mapped[str] = mapped_column(
        String(40), unique=True, comment="serialNumber as upper-case hex (random, >= 64 bits)"
    )
    issuer_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificate.id"), comment="the issuer's certificate; NULL when self-signed"
    )
    kind: Mapped[CertificateKind]
    subject: Mapped[str] = mapped_column(comment="subject DN as text, for display")
    system_title: Mapped[bytes | None] = mapped_column(
        LargeBinary(8), comment="end entity: the system title of its CN"
    )
    meter_id: Mapped[int | None] = mapped_column(ForeignKey("meter.id", ondelete="RESTRICT"))
    key_label: Mapped[str | None] = mapped_column(
        comment="the KMS's own end entities and CAs: CKA_LABEL of the private key in the token"
    )
    curve: Mapped[str] = mapped_column(String(8), comment="P-256 or P-384 (the subject key)")
    der: Mapped[bytes] = mapped_column(comment="the certificate as issued")
    not_before: Mapped[datetime.datetime]
    not_after: Mapped[datetime.datetime]
    status: Mapped[CertificateStatus]
    revoked_at: Mapped[datetime.datetime | None]
    revocation_reason: Mapped[str | None] = mapped_column(
        String(32), comment="RFC 5280 CRLReason name"
    )
    created_at: Mapped[datetime_now]

    meter: Mapped[Meter | None] = relationship()


class CertificateAuthority(ModelBase):
    """A CA whose private key is a token object: the root, or an issuing CA of a suite."""

    __tablename__ = "certificate_authority"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="e.g. root-v1, suite1-v2")
    role: Mapped[AuthorityRole]
    suite: Mapped[int | None] = mapped_column(comment="issuing CAs: the DLMS suite (1 or 2)")
    version: Mapped[int]
    curve: Mapped[str] = mapped_column(String(8))
    key_label: Mapped[str] = mapped_column(
        unique=True, comment="CKA_LABEL of the private key in the token"
    )
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificate.id"), unique=True)
    state: Mapped[AuthorityState]
    crl_number: Mapped[int] = mapped_column(
        BigInteger, comment="the last cRLNumber this CA signed (0: none yet)"
    )
    created_at: Mapped[datetime_now]
    retired_at: Mapped[datetime.datetime | None]

    certificate: Mapped[Certificate] = relationship()


class Officer(ModelBase):
    """A security officer who approves ceremonies with an ECDSA key of their own."""

    __tablename__ = "officer"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[bytes] = mapped_column(comment="DER SubjectPublicKeyInfo (EC P-256/P-384)")
    key_fingerprint: Mapped[str] = mapped_column(
        String(64), unique=True, comment="SHA-256 of the SubjectPublicKeyInfo, hex"
    )
    state: Mapped[OfficerState]
    created_at: Mapped[datetime_now]


class Approval(ModelBase):
    """One officer's verified approval of one ceremony request; a request is used once."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("request_id", "officer_id"),)

    id: Mapped[intpk]
    request_id: Mapped[str] = mapped_column(String(32), comment="the request's random id (hex)")
    ceremony: Mapped[str] = mapped_column(String(64))
    officer_id: Mapped[int] = mapped_column(ForeignKey("officer.id"))
    request: Mapped[str] = mapped_column(Text, comment="the request exactly as signed")
    signature: Mapped[bytes] = mapped_column(comment="the officer's ECDSA signature (DER)")
    verified_at: Mapped[datetime_now]

    officer: Mapped[Officer] = relationship()


class AgreementState(enum.Enum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class KeyAgreement(ModelBase):
    """A key_agreement (security setup method 3) between the request the KMS made and the
    meter's reply: the KMS's ephemeral key pairs wait in the token as derive-only token objects
    (labels in ``entries``), destroyed when the agreement completes, is cancelled or expires."""

    __tablename__ = "key_agreement"

    id: Mapped[intpk]
    handle: Mapped[str] = mapped_column(String(32), unique=True, comment="public name (hex)")
    security_setup_id: Mapped[int] = mapped_column(
        ForeignKey("security_setup.id", ondelete="CASCADE")
    )
    state: Mapped[AgreementState]
    entries: Mapped[str] = mapped_column(
        Text, comment="JSON: key_id, token label of the ephemeral key pair, its public point"
    )
    created_at: Mapped[datetime_now]
    expires_at: Mapped[datetime.datetime]
    finished_at: Mapped[datetime.datetime | None]

    setup: Mapped[SecuritySetup] = relationship()


class CeremonyPolicy(ModelBase):
    """The M-of-N quorum (and whether revoking a CA certificate is a ceremony), fixed in the
    database when the first officer is registered: a quorum read from each process's
    configuration would be whatever the operator's environment says."""

    __tablename__ = "ceremony_policy"

    id: Mapped[intpk]
    approvals: Mapped[int] = mapped_column(comment="M: approvals each ceremony needs")
    officers: Mapped[int] = mapped_column(comment="N: officers who may be registered")
    ca_revocation_ceremony: Mapped[bool] = mapped_column(
        server_default=false(), comment="revoking a CA certificate needs M approvals"
    )
    created_at: Mapped[datetime_now]


class CeremonyRun(ModelBase):
    """A ceremony request claimed by the run that executes it, before any token work: a second
    run of the same request (even with other officers' approvals) fails on the unique id."""

    __tablename__ = "ceremony_run"

    id: Mapped[intpk]
    request_id: Mapped[str] = mapped_column(String(32), unique=True)
    ceremony: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime_now]
