"""Queries of the PKI tables (kms.db stays the only importer of SQLAlchemy)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from kms.db.base import ModelBase
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

# --- officers and approvals -------------------------------------------------------------------


def active_officers(session: Session) -> list[Officer]:
    query = select(Officer).where(Officer.state == OfficerState.ACTIVE).order_by(Officer.name)
    return list(session.scalars(query))


def officer_by_name(session: Session, name: str) -> Officer | None:
    return session.scalar(select(Officer).where(Officer.name == name))


def officer_by_fingerprint(session: Session, fingerprint: str) -> Officer | None:
    return session.scalar(select(Officer).where(Officer.key_fingerprint == fingerprint))


def request_used(session: Session, request_id: str) -> bool:
    query = select(func.count()).select_from(Approval).where(Approval.request_id == request_id)
    claimed = (
        select(func.count()).select_from(CeremonyRun).where(CeremonyRun.request_id == request_id)
    )
    return bool(session.scalar(query)) or bool(session.scalar(claimed))


def officers_ever(session: Session) -> int:
    """Officers ever registered (an officer is never deleted, only removed)."""
    return int(session.scalar(select(func.count()).select_from(Officer)) or 0)


def ceremony_policy(session: Session) -> CeremonyPolicy | None:
    return session.scalar(select(CeremonyPolicy).order_by(CeremonyPolicy.id))


# --- certificate authorities ------------------------------------------------------------------


def authorities(
    session: Session, role: AuthorityRole | None = None, suite: int | None = None
) -> list[CertificateAuthority]:
    """CAs, newest version first."""
    query = select(CertificateAuthority)
    if role is not None:
        query = query.where(CertificateAuthority.role == role)
    if suite is not None:
        query = query.where(CertificateAuthority.suite == suite)
    return list(session.scalars(query.order_by(CertificateAuthority.version.desc())))


def active_authority(
    session: Session, role: AuthorityRole, suite: int | None = None
) -> CertificateAuthority | None:
    query = select(CertificateAuthority).where(
        CertificateAuthority.role == role, CertificateAuthority.state == AuthorityState.ACTIVE
    )
    if suite is not None:
        query = query.where(CertificateAuthority.suite == suite)
    return session.scalar(query)


def authority_by_name(session: Session, name: str) -> CertificateAuthority | None:
    return session.scalar(select(CertificateAuthority).where(CertificateAuthority.name == name))


def authority_of_certificate(session: Session, certificate_id: int) -> CertificateAuthority | None:
    query = select(CertificateAuthority).where(
        CertificateAuthority.certificate_id == certificate_id
    )
    return session.scalar(query)


def lock_authority(session: Session, authority_id: int) -> CertificateAuthority:
    """The CA row, locked for the transaction and read afresh (its cRLNumber moves on: a copy
    loaded earlier in the session must not hide another transaction's number)."""
    query = (
        select(CertificateAuthority)
        .where(CertificateAuthority.id == authority_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def retire_authority(
    session: Session, authority_id: int, state: AuthorityState, when: datetime.datetime
) -> None:
    session.execute(
        update(CertificateAuthority)
        .where(CertificateAuthority.id == authority_id)
        .values(state=state, retired_at=when)
    )


# --- certificates -----------------------------------------------------------------------------


def certificate_by_serial(session: Session, serial: str) -> Certificate | None:
    return session.scalar(select(Certificate).where(Certificate.serial == serial))


def certificate_by_id(session: Session, certificate_id: int) -> Certificate:
    return session.get_one(Certificate, certificate_id)


def list_certificates(
    session: Session,
    *,
    system_title: bytes | None = None,
    kind: CertificateKind | None = None,
    status: CertificateStatus | None = None,
    limit: int | None = None,
) -> list[Certificate]:
    query = select(Certificate)
    if system_title is not None:
        query = query.where(Certificate.system_title == system_title)
    if kind is not None:
        query = query.where(Certificate.kind == kind)
    if status is not None:
        query = query.where(Certificate.status == status)
    query = query.order_by(Certificate.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def revoked_by_issuer(session: Session, issuer_id: int) -> list[Certificate]:
    query = (
        select(Certificate)
        .where(Certificate.issuer_id == issuer_id, Certificate.status == CertificateStatus.REVOKED)
        .order_by(Certificate.revoked_at, Certificate.id)
    )
    return list(session.scalars(query))


def insert_certificates(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert certificate rows (issuance, a chunk at a time): one executemany through Core
    rather than an ORM object and a flush per certificate. The ids are not read back; nothing
    that issues a batch refers to the new rows."""
    if rows:
        session.execute(insert(ModelBase.metadata.tables["certificate"]), list(rows))


def serials_taken(session: Session, serials: Sequence[str]) -> set[str]:
    if not serials:
        return set()
    query = select(Certificate.serial).where(Certificate.serial.in_(serials))
    return set(session.scalars(query))


# --- key agreements ---------------------------------------------------------------------------


def lock_key_agreement(session: Session, handle: str) -> KeyAgreement | None:
    """A pending or finished key agreement by handle, locked for the transaction."""
    query = select(KeyAgreement).where(KeyAgreement.handle == handle).with_for_update()
    return session.scalar(query)


def expired_key_agreements(session: Session, now: datetime.datetime) -> list[KeyAgreement]:
    query = select(KeyAgreement).where(
        KeyAgreement.state == AgreementState.PENDING, KeyAgreement.expires_at <= now
    )
    return list(session.scalars(query))
