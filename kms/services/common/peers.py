"""The trust store: whose public keys the KMS verifies with, and which of its own key pairs it
signs and agrees with.

Every domain needs these answers -- the head-end verifies a meter's HLS-ECDSA answer and
general-signing APDUs, provisioning agrees keys with a meter, the PKI issues certificates under
a CA that must still be valid -- but none of them should reach into another domain's package to
get them. So the lookups live here, beside the approvals, and read only the certificate rows
that the PKI domain writes.

A certificate is *in use* when it is VALID, inside its validity period, and the CA that issued
it is neither revoked nor expired: revoking an issuing CA takes every certificate under it out
of use, the meters' and the KMS's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kms.db import Certificate, CertificateKind, CertificateStatus, Session
from kms.db import pki_repository as pki_repo
from kms.db.base import utcnow
from kms.dlms.system_title import format_system_title
from kms.errors import NotFoundError
from kms.hsm import TokenKey
from kms.pki import encoding
from kms.pki.profiles import CertificateType

__all__ = ["KIND_OF_TYPE", "OwnKey", "issuer_valid", "own_key", "peer_public_key"]

#: The database's kind of each certificate type.
KIND_OF_TYPE = {
    CertificateType.DIGITAL_SIGNATURE: CertificateKind.SIGNING,
    CertificateType.KEY_AGREEMENT: CertificateKind.KEY_AGREEMENT,
    CertificateType.TLS: CertificateKind.TLS,
}


@dataclass(frozen=True)
class OwnKey:
    """One of the KMS's own key pairs in the token, with its current certificate."""

    key: TokenKey
    curve: str
    certificate_der: bytes
    serial: str
    system_title: bytes


def issuer_valid(session: Session, row: Certificate) -> bool:
    """Whether the CA that issued ``row`` is neither revoked nor expired."""
    if row.issuer_id is None:
        return False
    issuer = pki_repo.certificate_by_id(session, row.issuer_id)
    return issuer.status is CertificateStatus.VALID and utcnow() < issuer.not_after


def peer_public_key(
    session: Session, system_title: bytes, certificate_type: CertificateType, curve: str
) -> tuple[Any, str]:
    """The public key (asn1crypto PublicKeyInfo) and serial of a meter's newest certificate in
    use of ``certificate_type`` on ``curve``: what the KMS verifies the meter with."""
    now = utcnow()
    rows = pki_repo.list_certificates(
        session, system_title=system_title, kind=KIND_OF_TYPE[certificate_type]
    )
    for row in reversed(rows):
        usable = row.status is CertificateStatus.VALID and row.not_before <= now < row.not_after
        if usable and row.key_label is None and row.curve == curve and issuer_valid(session, row):
            tbs = encoding.load_certificate(row.der)["tbs_certificate"]
            return tbs["subject_public_key_info"], row.serial
    raise NotFoundError(
        f"meter {format_system_title(system_title)} has no valid {certificate_type.cli_name} "
        f"certificate on {curve}: issue one (kms cert issue)"
    )


def own_certificates(
    session: Session, system_title: bytes, kind: CertificateKind
) -> list[Certificate]:
    """Every certificate of the KMS's own entity ``system_title`` of ``kind`` (a key in the
    token behind each), oldest first."""
    return [
        c
        for c in pki_repo.list_certificates(session, system_title=system_title, kind=kind)
        if c.key_label is not None
    ]


def own_key(
    session: Session, system_title: bytes, certificate_type: CertificateType, curve: str
) -> OwnKey:
    """The newest key pair in use of the KMS's own entity ``system_title`` of that type and
    curve, or NotFoundError naming the command that makes one."""
    kind = KIND_OF_TYPE[certificate_type]
    now = utcnow()
    for row in reversed(own_certificates(session, system_title, kind)):
        usable = row.status is CertificateStatus.VALID and row.not_before <= now < row.not_after
        if usable and row.curve == curve and issuer_valid(session, row):
            assert row.key_label is not None
            return OwnKey(
                TokenKey(row.key_label, "private"), row.curve, row.der, row.serial, system_title
            )
    raise NotFoundError(
        f"the KMS has no valid {certificate_type.cli_name} key on {curve} for "
        f"{format_system_title(system_title)}: run `kms entity create`"
    )
