"""The metadata database: the only package that imports ``sqlalchemy``
(docs/architecture.md section 3)."""

from sqlalchemy.orm import Session

from kms.db.base import ModelBase
from kms.db.models import (
    Association,
    AssociationState,
    AuditCheckpoint,
    AuditEvent,
    Direction,
    InvocationCounter,
    KeyRole,
    KeyState,
    KeyVersion,
    Meter,
    MeterState,
    RootKey,
    RootKeyPurpose,
    SecuritySetup,
)
from kms.db.pki_models import (
    AgreementState,
    Approval,
    AuthorityRole,
    AuthorityState,
    CeremonyPolicy,
    CeremonyRun,
    Certificate,
    CertificateAuthority,
    CertificateKind,
    CertificateStatus,
    KeyAgreement,
    Officer,
    OfficerState,
)
from kms.db.session import Database, after_commit, lock_audit_chain

__all__ = [
    "AgreementState",
    "Approval",
    "Association",
    "AssociationState",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthorityRole",
    "AuthorityState",
    "CeremonyPolicy",
    "CeremonyRun",
    "Certificate",
    "CertificateAuthority",
    "CertificateKind",
    "CertificateStatus",
    "Database",
    "Direction",
    "InvocationCounter",
    "KeyAgreement",
    "KeyRole",
    "KeyState",
    "KeyVersion",
    "Meter",
    "MeterState",
    "ModelBase",
    "Officer",
    "OfficerState",
    "RootKey",
    "RootKeyPurpose",
    "SecuritySetup",
    "Session",
    "after_commit",
    "lock_audit_chain",
]
