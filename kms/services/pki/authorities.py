"""Certificate authority ceremonies: the root CA (P-384) and one issuing CA per suite (P-256 for
suite 1, P-384 for suite 2), their private keys generated in the token and never outside it.

Each ceremony verifies its M-of-N approvals (:mod:`kms.services.common.approvals`) before it touches
the token, then generates the key pair, has :mod:`kms.pki` build the certificate and the token sign
it, checks the result against the KMS's own profile checker, and records it with its audit event in
one transaction. If anything fails after the key pair exists, the key pair is destroyed: nothing is
half-made. Token labels end in token-random bytes, so a ceremony killed before its commit leaves at
worst an orphan key nobody records, never a clash with the next attempt; the request itself is
claimed before the token is touched, so it runs once.

CA keys are extractable only under a ``CKA_TRUSTED`` wrapping key (``CKA_WRAP_WITH_TRUSTED``), for
the backup ceremony. Rotating an issuing CA retires the old one: it issues nothing more, but still
signs CRLs for what it issued, and its certificates stay valid until they expire or are revoked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import keys, x509  # type: ignore[import-untyped, unused-ignore]
from cryptography import x509 as pyca_x509

from kms.config import Config
from kms.db import (
    Approval,
    AuthorityRole,
    AuthorityState,
    Certificate,
    CertificateAuthority,
    CertificateKind,
    CertificateStatus,
    Session,
)
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.suites import SecuritySuite
from kms.errors import ConflictError, InvalidCertificatePath, KMSError, NotFoundError
from kms.hsm import Hsm, TokenKey, TokenSigner
from kms.pki import ca, encoding, profiles
from kms.pki.ecdsa import public_key_curve
from kms.services.common import audit
from kms.services.common.approvals import (
    ApprovalFile,
    ApprovalService,
    CeremonyRequest,
    approvers,
)
from kms.services.common.resources import Resources

ROOT_CURVE = "P-384"
_DEFAULT_ORGANIZATION = "DLMS KMS"


@dataclass(frozen=True)
class AuthorityReport:
    """What a CA ceremony made: never a key byte."""

    name: str
    role: str
    suite: int | None
    curve: str
    key_label: str
    serial: str
    subject: str
    not_after: datetime.datetime
    certificate_pem: str
    retired: str | None
    approvals: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        """The report as JSON takes it: ``certificate`` (PEM), ``not_after`` in ISO 8601."""
        out = dataclasses.asdict(self)
        out["not_after"] = self.not_after.isoformat()
        out["certificate"] = out.pop("certificate_pem")
        return out


def serial_hex(serial_number: int) -> str:
    """The stored and displayed form of a serial number: upper-case hex in whole bytes (an even
    number of digits, a leading 0 where the value needs it), as ``openssl x509 -serial``
    prints it. Migration 0006 brought older rows, stored without leading zeros, to this form."""
    digits = f"{serial_number:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def certificate_row(
    certificate: x509.Certificate,
    kind: CertificateKind,
    *,
    issuer_id: int | None,
    meter_id: int | None = None,
    key_label: str | None = None,
) -> Certificate:
    """The database row of a certificate the KMS just issued."""
    tbs = certificate["tbs_certificate"]
    validity = tbs["validity"]
    public = tbs["subject_public_key_info"]
    system_title = None
    if kind is not CertificateKind.CA:
        system_title = profiles.name_system_title(tbs["subject"])
    return Certificate(
        serial=serial_hex(tbs["serial_number"].native),
        issuer_id=issuer_id,
        kind=kind,
        subject=subject_text(certificate),
        system_title=system_title,
        meter_id=meter_id,
        key_label=key_label,
        curve=public_key_curve(public),
        der=certificate.dump(),
        not_before=validity["not_before"].native,
        not_after=validity["not_after"].native,
        status=CertificateStatus.VALID,
    )


def subject_text(certificate: x509.Certificate) -> str:
    """The subject as RFC 4514 text (pyca's rendering), for lists and audit records."""
    return pyca_x509.load_der_x509_certificate(certificate.dump()).subject.rfc4514_string()


def authority_certificate(authority: CertificateAuthority) -> x509.Certificate:
    return encoding.load_certificate(authority.certificate.der, f"CA {authority.name}")


def authority_signer(hsm: Hsm, authority: CertificateAuthority) -> TokenSigner:
    return hsm.signer(TokenKey(authority.key_label, "private"), authority.curve)


def require_usable(authority: CertificateAuthority, now: datetime.datetime) -> None:
    """An issuer must be neither revoked nor outside its validity (named as such)."""
    cert = authority.certificate
    if authority.state is AuthorityState.REVOKED or cert.status is CertificateStatus.REVOKED:
        raise InvalidCertificatePath(f"issuer {cert.subject} (CA {authority.name}) is revoked")
    if now >= cert.not_after:
        raise InvalidCertificatePath(
            f"issuer {cert.subject} (CA {authority.name}) expired at {cert.not_after.isoformat()}"
        )
    if now < cert.not_before:
        raise InvalidCertificatePath(
            f"issuer {cert.subject} (CA {authority.name}) is not yet valid"
        )


def validity_within(
    now: datetime.datetime, days: int, issuer_end: datetime.datetime | None
) -> profiles.Validity:
    """From ``now`` (whole seconds) for ``days``, cut at the issuer's own end: a certificate never
    outlives the CA that vouches for it."""
    start = now.replace(microsecond=0)
    end = start + datetime.timedelta(days=days)
    if issuer_end is not None and end > issuer_end:
        end = issuer_end
    return profiles.Validity(start, end)


def _organization(config: Config) -> str:
    return config.pki_organization or _DEFAULT_ORGANIZATION


class AuthorityService:
    """The CA ceremonies and the CA register (module docstring)."""

    def __init__(self, resources: Resources, approvals: ApprovalService) -> None:
        self._resources = resources
        self._approvals = approvals

    def create_root(
        self, *, actor: str, request: CeremonyRequest, approvals: Sequence[ApprovalFile]
    ) -> AuthorityReport:
        """The root CA: a P-384 key pair in the token and its self-signed certificate; once."""

        def make(session: Session, now: datetime.datetime) -> _Plan:
            approved = self._approvals.verify(
                session, request, approvals, ceremony="create-root-ca", parameters={}
            )
            if pki_repo.authorities(session, AuthorityRole.ROOT):
                raise ConflictError("a root CA already exists; the root is created once")
            return _Plan("root-v1", AuthorityRole.ROOT, None, ROOT_CURVE, 1, None, approved)

        return self._ceremony(actor, make, "ca.create")

    def create_issuing(
        self,
        *,
        actor: str,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
        suite: SecuritySuite,
    ) -> AuthorityReport:
        """The first issuing CA of ``suite``, signed by the root in the token."""
        return self._issuing(actor, request, approvals, suite, rotate=False)

    def rotate_issuing(
        self,
        *,
        actor: str,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
        suite: SecuritySuite,
    ) -> AuthorityReport:
        """A new version of the issuing CA of ``suite``; the old one is retired (CRLs only)."""
        return self._issuing(actor, request, approvals, suite, rotate=True)

    def list(self) -> list[dict[str, object]]:
        """Every CA, as plain data (:func:`describe_authority`)."""
        with self._resources.database().begin() as session:
            return [describe_authority(a) for a in pki_repo.authorities(session)]

    def _issuing(
        self,
        actor: str,
        request: CeremonyRequest,
        approvals: Sequence[ApprovalFile],
        suite: SecuritySuite,
        *,
        rotate: bool,
    ) -> AuthorityReport:
        number = int(suite)

        def make(session: Session, now: datetime.datetime) -> _Plan:
            curve = profiles.curve_for_suite(suite)
            # Newest first; a revoked CA is replaced by rotating too (its successor is a new
            # version).
            latest = next(iter(pki_repo.authorities(session, AuthorityRole.ISSUING, number)), None)
            if rotate and latest is None:
                raise NotFoundError(
                    f"suite {number} has no issuing CA to rotate; create one first "
                    "(scripts/create_issuing_ca.py)"
                )
            if not rotate and latest is not None:
                raise ConflictError(
                    f"suite {number} already has an issuing CA; rotate it instead "
                    "(scripts/rotate_issuing_ca.py)"
                )
            ceremony = "rotate-issuing-ca" if rotate else "create-issuing-ca"
            approved = self._approvals.verify(
                session, request, approvals, ceremony=ceremony, parameters={"suite": number}
            )
            version = latest.version + 1 if latest is not None else 1
            active = latest is not None and latest.state is AuthorityState.ACTIVE
            retiring = latest if active else None
            name = f"suite{number}-v{version}"
            return _Plan(name, AuthorityRole.ISSUING, suite, curve, version, retiring, approved)

        return self._ceremony(actor, make, "ca.rotate" if rotate else "ca.create")

    def _ceremony(
        self,
        actor: str,
        plan_for: Callable[[Session, datetime.datetime], _Plan],
        operation: str,
    ) -> AuthorityReport:
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        config = self._resources.config
        made: TokenKey | None = None
        try:
            with db.begin() as session:
                now = utcnow()
                plan = plan_for(session, now)
                root = None
                if plan.role is AuthorityRole.ISSUING:
                    root = pki_repo.active_authority(session, AuthorityRole.ROOT)
                    if root is None:
                        raise NotFoundError("no root CA: run scripts/create_root_ca.py first")
                    require_usable(root, now)
                # Token-random, so a retry after a crash never meets an orphan of the same label.
                label = f"kms-ca-{plan.name}-{hsm.random(4).hex()}"
                made = hsm.create_ec_key_pair(label, label.encode(), plan.curve, backup=True)
                public = keys.PublicKeyInfo.load(hsm.public_key_der(made))
                serial = profiles.serial_number_from(hsm.random(16))
                org = _organization(config)
                if root is None:
                    subject = profiles.ca_name(f"{org} Root CA", org)
                    validity = validity_within(now, config.root_ca_validity_days, None)
                    cert = ca.self_signed_root(
                        serial_number=serial,
                        subject=subject,
                        public_key=public,
                        signer=hsm.signer(made, plan.curve),
                        validity=validity,
                    )
                    issuer_cert = cert
                else:
                    suite_no = int(plan.suite) if plan.suite is not None else 0
                    subject = profiles.ca_name(
                        f"{org} Suite {suite_no} Issuing CA v{plan.version}", org
                    )
                    issuer_cert = authority_certificate(root)
                    validity = validity_within(
                        now, config.issuing_ca_validity_days, root.certificate.not_after
                    )
                    cert = ca.issuing_ca(
                        serial_number=serial,
                        subject=subject,
                        public_key=public,
                        issuer=issuer_cert,
                        signer=authority_signer(hsm, root),
                        validity=validity,
                    )
                profiles.check_certificate(cert, issuer=issuer_cert, is_ca=True)
                row = certificate_row(
                    cert,
                    CertificateKind.CA,
                    issuer_id=root.certificate_id if root is not None else None,
                    key_label=label,
                )
                repo.add(session, row)
                authority = CertificateAuthority(
                    name=plan.name,
                    role=plan.role,
                    suite=int(plan.suite) if plan.suite is not None else None,
                    version=plan.version,
                    curve=plan.curve,
                    key_label=label,
                    certificate=row,
                    state=AuthorityState.ACTIVE,
                    crl_number=0,
                )
                if plan.retiring is not None:
                    pki_repo.retire_authority(
                        session, plan.retiring.id, AuthorityState.RETIRED, now
                    )
                repo.add(session, authority)
                approval_info = approvers(plan.approvals)
                audit.append(
                    session,
                    actor,
                    [
                        audit.AuditRecord(
                            operation,
                            plan.name,
                            {
                                "role": plan.role.value,
                                "suite": authority.suite,
                                "curve": plan.curve,
                                "key_label": label,
                                "serial": row.serial,
                                "not_after": row.not_after.isoformat(),
                                "retired": plan.retiring.name if plan.retiring else None,
                                **approval_info,
                            },
                        )
                    ],
                )
                report = AuthorityReport(
                    name=plan.name,
                    role=plan.role.value,
                    suite=authority.suite,
                    curve=plan.curve,
                    key_label=label,
                    serial=row.serial,
                    subject=row.subject,
                    not_after=row.not_after,
                    certificate_pem=encoding.certificate_pem(cert).decode(),
                    retired=plan.retiring.name if plan.retiring else None,
                    approvals=approval_info,
                )
        except BaseException:
            if made is not None:
                # The original error is what matters; a failed clean-up leaves an orphan key that
                # no row records, never a CA.
                with contextlib.suppress(KMSError):
                    hsm.destroy_key_pair(made)
            raise
        return report


@dataclass
class _Plan:
    name: str
    role: AuthorityRole
    suite: SecuritySuite | None
    curve: str
    version: int
    retiring: CertificateAuthority | None
    approvals: list[Approval]


def describe_authority(authority: CertificateAuthority) -> dict[str, object]:
    cert = authority.certificate
    return {
        "name": authority.name,
        "role": authority.role.value,
        "suite": authority.suite,
        "version": authority.version,
        "curve": authority.curve,
        "state": authority.state.value,
        "key_label": authority.key_label,
        "serial": cert.serial,
        "subject": cert.subject,
        "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(),
        "crl_number": authority.crl_number,
    }
