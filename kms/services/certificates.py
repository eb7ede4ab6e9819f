"""Meter certificates: issuance from the CSR a meter made (security setup method 5), the chain a
verifier needs, listing, revocation and CRLs, every signature made in the token.

Issuance checks the CSR (DER or PEM; its own signature; the subject CN is a system title) against
the meter's record: the meter must be known and of suite 1 or 2, and the CSR's key on that
suite's curve. The meter's issuing CA must be active, unexpired and unrevoked. The certificate is
built by :mod:`kms.pki.profiles`, signed by the issuing CA's key in the token, checked again by
the profile checker and against the path to the root, and only then stored and audited, in one
transaction. A batch is checked whole before anything is signed: one bad CSR refuses the batch,
naming it, and nothing is issued.

A CRL is signed by the CA that issued the revoked certificates, with a cRLNumber that only ever
grows (the CA row is locked while it moves on).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509  # type: ignore[import-untyped, unused-ignore]

from kms.config import Config
from kms.db import (
    AuthorityRole,
    AuthorityState,
    Certificate,
    CertificateAuthority,
    CertificateKind,
    CertificateStatus,
    Database,
    Meter,
    MeterState,
    Session,
)
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.security_setup import import_certificate_request
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import (
    CertificateProfileError,
    ConflictError,
    InputError,
    NotFoundError,
)
from kms.hsm import Hsm
from kms.pki import ca, crl, csr, encoding, path, profiles
from kms.pki.profiles import CertificateType
from kms.services import audit
from kms.services.certificate_authority import (
    authority_certificate,
    authority_signer,
    certificate_row,
    require_usable,
    serial_hex,
)

#: asn1crypto CRLReason names accepted by ``revoke``.
REVOCATION_REASONS = (
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "certificate_hold",
    "privilege_withdrawn",
)
KIND_OF_TYPE = {
    CertificateType.DIGITAL_SIGNATURE: CertificateKind.SIGNING,
    CertificateType.KEY_AGREEMENT: CertificateKind.KEY_AGREEMENT,
    CertificateType.TLS: CertificateKind.TLS,
}


@dataclass(frozen=True)
class CsrItem:
    """One CSR to issue for: its bytes, where it came from (for errors), and the type asked."""

    data: bytes
    source: str
    certificate_type: CertificateType


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate just issued: DER, and what lists and ``--json`` show."""

    der: bytes
    serial: str
    system_title: str
    certificate_type: str
    issuer: str
    not_after: datetime.datetime
    source: str

    def to_dict(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "system_title": self.system_title,
            "type": self.certificate_type,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat(),
            "source": self.source,
            "import_certificate": import_certificate_apdu(self.der).hex().upper(),
        }


def import_certificate_apdu(der: bytes) -> bytes:
    """The action-request a station sends to give a meter a certificate: security setup
    (0.0.43.0.0.255) method 6, import_certificate."""
    return import_certificate_request(der)


@dataclass
class _Checked:
    item: CsrItem
    request: csr.CertificateRequest
    meter: Meter
    authority: CertificateAuthority


def parse_serial(text: str) -> str:
    """A serial number as typed (hex, colons, 0x and leading zeros allowed) in stored form."""
    cleaned = text.strip().replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InputError(
            f"not a hexadecimal serial number: {text[:48]!r}", field="serial"
        ) from None
    if value <= 0 or value.bit_length() > 160:
        raise InputError("a serial number is positive and at most 20 octets", field="serial")
    return serial_hex(value)


def _check(session: Session, item: CsrItem, now: datetime.datetime) -> _Checked:
    request = csr.load_csr(item.data, item.source)
    title = format_system_title(request.system_title)
    meter = repo.meter_by_system_title(session, request.system_title)
    if meter is None:
        raise NotFoundError(f"{item.source}: unknown meter {title} (the CSR's subject CN)")
    if meter.state is MeterState.RETIRED:
        raise ConflictError(f"{item.source}: meter {title} is retired")
    suite = SecuritySuite(meter.suite)
    if suite is SecuritySuite.AES_GCM_128:
        raise CertificateProfileError(
            f"{item.source}: meter {title} is a suite 0 meter; certificates are for suites 1 and 2"
        )
    expected = profiles.curve_for_suite(suite)
    if request.curve != expected:
        raise CertificateProfileError(
            f"{item.source}: the CSR's key is on {request.curve}, meter {title} is suite "
            f"{int(suite)} ({expected})"
        )
    authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, int(suite))
    if authority is None:
        raise NotFoundError(
            f"no active issuing CA for suite {int(suite)}: run scripts/create_issuing_ca.py"
        )
    require_usable(authority, now)
    return _Checked(item, request, meter, authority)


def issue(
    hsm: Hsm,
    db: Database,
    config: Config,
    actor: str,
    items: Sequence[CsrItem],
    *,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 500,
) -> list[IssuedCertificate]:
    """Issue one certificate per CSR; all or nothing. ``progress`` is told how many more were
    signed after each chunk."""
    if not items:
        raise InputError("no CSR to issue a certificate for")
    issued: list[IssuedCertificate] = []
    with db.begin() as session:
        now = utcnow()
        checked = [_check(session, item, now) for item in items]
        _refuse_duplicates(checked)
        anchors: dict[int, tuple[x509.Certificate, x509.Certificate]] = {}
        records: list[audit.AuditRecord] = []
        for start in range(0, len(checked), chunk_size):
            for one in checked[start : start + chunk_size]:
                issuer_cert, root_cert = _issuer_and_root(session, one.authority, anchors)
                cert = _sign(hsm, config, one, issuer_cert, now)
                path.validate_path(cert, [issuer_cert], root_cert, at=now)
                row = certificate_row(
                    cert,
                    KIND_OF_TYPE[one.item.certificate_type],
                    issuer_id=one.authority.certificate_id,
                    meter_id=one.meter.id,
                )
                repo.add(session, row)
                result = IssuedCertificate(
                    der=row.der,
                    serial=row.serial,
                    system_title=format_system_title(one.request.system_title),
                    certificate_type=one.item.certificate_type.cli_name,
                    issuer=one.authority.name,
                    not_after=row.not_after,
                    source=one.item.source,
                )
                issued.append(result)
                records.append(
                    audit.AuditRecord(
                        "certificate.issue",
                        result.system_title,
                        {
                            k: v
                            for k, v in result.to_dict().items()
                            if k not in ("source", "import_certificate")
                        },
                    )
                )
            session.flush()
            if progress is not None:
                progress(min(chunk_size, len(checked) - start))
        audit.append(session, actor, records)
    return issued


def _refuse_duplicates(checked: Sequence[_Checked]) -> None:
    seen: dict[tuple[bytes, CertificateType], str] = {}
    for one in checked:
        key = (one.request.system_title, one.item.certificate_type)
        if key in seen:
            raise ConflictError(
                f"{one.item.source}: a second {one.item.certificate_type.cli_name} CSR for meter "
                f"{format_system_title(key[0])} in the same batch (first: {seen[key]})"
            )
        seen[key] = one.item.source


def _issuer_and_root(
    session: Session,
    authority: CertificateAuthority,
    cache: dict[int, tuple[x509.Certificate, x509.Certificate]],
) -> tuple[x509.Certificate, x509.Certificate]:
    if authority.id not in cache:
        root = pki_repo.active_authority(session, AuthorityRole.ROOT)
        if root is None:
            raise NotFoundError("no root CA: run scripts/create_root_ca.py first")
        cache[authority.id] = (authority_certificate(authority), authority_certificate(root))
    return cache[authority.id]


def _sign(
    hsm: Hsm,
    config: Config,
    one: _Checked,
    issuer_cert: x509.Certificate,
    now: datetime.datetime,
) -> x509.Certificate:
    issuer_end = one.authority.certificate.not_after
    start = now.replace(microsecond=0)
    end = min(start + datetime.timedelta(days=config.certificate_validity_days), issuer_end)
    tbs = profiles.end_entity_tbs(
        serial_number=profiles.serial_number_from(hsm.random(16)),
        issuer=issuer_cert,
        system_title=one.request.system_title,
        public_key=one.request.public_key,
        certificate_type=one.item.certificate_type,
        validity=profiles.Validity(start, end),
    )
    cert = ca.sign_certificate(tbs, authority_signer(hsm, one.authority))
    profiles.check_certificate(
        cert,
        issuer=issuer_cert,
        certificate_type=one.item.certificate_type,
        system_title=one.request.system_title,
        is_ca=False,
    )
    return cert


# --- reading ----------------------------------------------------------------------------------


def describe(row: Certificate) -> dict[str, object]:
    """A certificate row as plain data (no DER)."""
    return {
        "serial": row.serial,
        "type": row.kind.value.lower().replace("_", "-"),
        "subject": row.subject,
        "system_title": format_system_title(row.system_title) if row.system_title else None,
        "curve": row.curve,
        "not_before": row.not_before.isoformat(),
        "not_after": row.not_after.isoformat(),
        "status": row.status.value,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revocation_reason": row.revocation_reason,
        "key_label": row.key_label,
    }


def show(db: Database, serial: str) -> tuple[dict[str, object], bytes]:
    """One certificate by serial: its description (with the issuer) and DER."""
    with db.begin() as session:
        row = _by_serial(session, serial)
        out = describe(row)
        out["issuer"] = (
            pki_repo.certificate_by_id(session, row.issuer_id).subject
            if row.issuer_id is not None
            else row.subject
        )
        return out, row.der


def list_certificates(
    db: Database,
    *,
    system_title: bytes | None = None,
    kind: CertificateKind | None = None,
    status: CertificateStatus | None = None,
    limit: int | None = None,
    own: bool = False,
) -> list[dict[str, object]]:
    """Certificates as plain data; ``own``: only the KMS's end entities (key in the token)."""
    with db.begin() as session:
        rows = pki_repo.list_certificates(
            session, system_title=system_title, kind=kind, status=status, limit=limit
        )
        if own:
            rows = [r for r in rows if r.key_label is not None and r.kind is not CertificateKind.CA]
        return [describe(row) for row in rows]


def chain(db: Database, suite: SecuritySuite) -> list[bytes]:
    """The active issuing CA of ``suite`` and the root (DER, in that order)."""
    with db.begin() as session:
        issuing = pki_repo.active_authority(session, AuthorityRole.ISSUING, int(suite))
        if issuing is None:
            raise NotFoundError(f"no active issuing CA for suite {int(suite)}")
        root = pki_repo.active_authority(session, AuthorityRole.ROOT)
        if root is None:
            raise NotFoundError("no root CA")
        return [issuing.certificate.der, root.certificate.der]


def _by_serial(session: Session, serial: str) -> Certificate:
    row = pki_repo.certificate_by_serial(session, parse_serial(serial))
    if row is None:
        raise NotFoundError(f"no certificate with serial {parse_serial(serial)}")
    return row


def peer_public_key(
    session: Session, system_title: bytes, certificate_type: CertificateType, curve: str
) -> tuple[Any, str]:
    """The public key (asn1crypto PublicKeyInfo) and serial of a meter's newest valid
    certificate of ``certificate_type`` on ``curve``: what the KMS verifies the meter with."""
    now = utcnow()
    rows = pki_repo.list_certificates(
        session, system_title=system_title, kind=KIND_OF_TYPE[certificate_type]
    )
    for row in reversed(rows):
        usable = row.status is CertificateStatus.VALID and row.not_before <= now < row.not_after
        if usable and row.key_label is None and row.curve == curve:
            tbs = encoding.load_certificate(row.der)["tbs_certificate"]
            return tbs["subject_public_key_info"], row.serial
    raise NotFoundError(
        f"meter {format_system_title(system_title)} has no valid {certificate_type.cli_name} "
        f"certificate on {curve}: issue one (kms cert issue)"
    )


# --- revocation and CRLs ------------------------------------------------------------------------


def revoke(db: Database, actor: str, serial: str, reason: str = "unspecified") -> dict[str, object]:
    """Mark a certificate revoked (and its CA, if it is a CA certificate); audited."""
    if reason not in REVOCATION_REASONS:
        raise InputError(
            f"unknown revocation reason {reason!r}; one of {', '.join(REVOCATION_REASONS)}",
            field="reason",
        )
    with db.begin() as session:
        row = _by_serial(session, serial)
        if row.status is CertificateStatus.REVOKED:
            raise ConflictError(f"certificate {row.serial} is already revoked")
        if row.issuer_id is None:
            raise ConflictError(
                "the root certificate cannot be revoked by a CRL; withdraw it as trust anchor"
            )
        now = utcnow()
        row.status = CertificateStatus.REVOKED
        row.revoked_at = now
        row.revocation_reason = reason
        authority = pki_repo.authority_of_certificate(session, row.id)
        if authority is not None:
            pki_repo.retire_authority(session, authority.id, AuthorityState.REVOKED, now)
        out = describe(row)
        audit.append(session, actor, [audit.AuditRecord("certificate.revoke", row.serial, out)])
        return out


def issue_crl(
    hsm: Hsm,
    db: Database,
    config: Config,
    actor: str,
    *,
    suite: SecuritySuite | None = None,
    authority_name: str | None = None,
) -> tuple[bytes, dict[str, object]]:
    """A CRL signed in the token by the suite's active issuing CA (or a named CA, the root
    included), listing every certificate it issued that is revoked."""
    with db.begin() as session:
        authority = _crl_authority(session, suite, authority_name)
        authority = pki_repo.lock_authority(session, authority.id)
        now = utcnow().replace(microsecond=0)
        revoked = [
            crl.RevokedCertificate(
                int(row.serial, 16),
                row.revoked_at or now,
                row.revocation_reason,
            )
            for row in pki_repo.revoked_by_issuer(session, authority.certificate_id)
        ]
        number = authority.crl_number + 1
        tbs = crl.crl_tbs(
            issuer=authority_certificate(authority),
            revoked=revoked,
            this_update=now,
            next_update=now + datetime.timedelta(days=config.crl_validity_days),
            crl_number=number,
        )
        signed = crl.sign_crl(tbs, authority_signer(hsm, authority))
        authority.crl_number = number
        info: dict[str, object] = {
            "ca": authority.name,
            "crl_number": number,
            "revoked": len(revoked),
            "this_update": now.isoformat(),
            "next_update": (now + datetime.timedelta(days=config.crl_validity_days)).isoformat(),
        }
        audit.append(session, actor, [audit.AuditRecord("crl.issue", authority.name, info)])
        return signed.dump(), info


def _crl_authority(
    session: Session, suite: SecuritySuite | None, name: str | None
) -> CertificateAuthority:
    if name is not None:
        authority = pki_repo.authority_by_name(session, name)
        if authority is None:
            raise NotFoundError(f"no CA named {name!r}")
    else:
        if suite is None:
            raise InputError("name a suite or a CA")
        authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, int(suite))
        if authority is None:
            raise NotFoundError(f"no active issuing CA for suite {int(suite)}")
    if authority.state is AuthorityState.REVOKED:
        raise ConflictError(f"CA {authority.name} is revoked; it signs nothing more")
    return authority


def pem_or_der(der: bytes, kind: str, suffix: str) -> bytes:
    """File bytes for a certificate or CRL: DER when the file name ends in .der, else PEM."""
    return encoding.pem_or_der(der, kind, suffix)
