"""Meter certificates: issuance from the CSR a meter made (security setup method 5), the chain a
verifier needs, listing, revocation and CRLs, every signature made in the token.

Issuance checks the CSR (DER or PEM; its own signature; the subject CN is a system title) against
the meter's record: the meter must be known and of suite 1 or 2, and the CSR's key on that
suite's curve. The meter's issuing CA must be active, unexpired and unrevoked, and its path to
the root valid. The certificates are built to the profile of :mod:`kms.pki.profiles`, signed by
the issuing CA's key in the token and checked again -- the first of each issuer and type by the
full profile checker, every one by its signature under the issuer's key -- and only then stored
and audited, in one transaction (:mod:`kms.services.pki.issuance` says how a batch is made fast). A
batch is checked whole before anything is signed: one bad CSR refuses the batch, naming it, and
nothing is issued.

A CRL is signed by the CA that issued the revoked certificates, with a cRLNumber that only ever
grows (the CA row is locked while it moves on).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kms.db import (
    AuthorityRole,
    AuthorityState,
    Certificate,
    CertificateAuthority,
    CertificateKind,
    CertificateStatus,
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
    ApprovalError,
    CertificateProfileError,
    ConflictError,
    InputError,
    InvalidSignature,
    KMSError,
    NotFoundError,
)
from kms.formats import csr_batch
from kms.formats.csr_batch import CsrItem, Shape
from kms.formats.files import check_writable, write_atomically
from kms.phases import NO_PHASES, Phases
from kms.pki import crl, csr, encoding, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import audit
from kms.services.common.approvals import (
    ApprovalFile,
    ApprovalService,
    CeremonyRequest,
    approvers,
)
from kms.services.common.peers import issuer_valid
from kms.services.common.resources import Resources
from kms.services.pki import issuance
from kms.services.pki.authorities import (
    authority_certificate,
    authority_signer,
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
#: Threads that load and verify a batch's CSRs (pyca releases the GIL while it verifies); more
#: than the cores only adds switching.
_WORKERS = max(2, min(8, os.cpu_count() or 1))
#: CSRs per worker task: one future per CSR would cost the submitting thread more than the
#: decode, and it holds the GIL while the workers wait for it.
_CSR_SLICE = 64


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

    def summary(self) -> dict[str, object]:
        """What lists and the audit record show: no DER, no file name."""
        return {
            "serial": self.serial,
            "system_title": self.system_title,
            "type": self.certificate_type,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat(),
        }

    def to_dict(self) -> dict[str, object]:
        return {
            **self.summary(),
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
    meter: repo.MeterRef
    authority: CertificateAuthority


def parse_serial(text: str) -> str:
    """A serial number as typed (hex, colons, 0x and leading zeros allowed: ``1ABC``,
    ``01ABC`` and ``01:AB:CD`` are the same) in stored form (:func:`serial_hex`)."""
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


def _load_csrs(
    items: Sequence[CsrItem], phases: Phases = NO_PHASES
) -> tuple[list[csr.CertificateRequest], KMSError | None]:
    """The items' CSRs loaded and verified, up to the first that fails, and its error."""
    loaded: list[csr.CertificateRequest] = []
    for item in items:
        try:
            with phases.phase("CSR: decode, checks"):
                loaded.append(csr.load_csr(item.data, item.source, phases=phases))
        except (CertificateProfileError, InvalidSignature) as error:
            # Name the CSR (an InputError names its source already): in a folder of a thousand,
            # "the CSR signature does not verify" alone says nothing of which.
            return loaded, type(error)(f"{item.source}: {error.message}")
        except KMSError as error:
            return loaded, error
    return loaded, None


def _check_all(
    session: Session, items: Sequence[CsrItem], now: datetime.datetime, phases: Phases
) -> list[_Checked]:
    """Every CSR parsed and verified, then checked against its meter and the suite's issuing CA.

    The CSRs are loaded on worker threads, the meters of the whole batch come from one query and
    each suite's CA is looked up and judged once. The first bad item is still the one reported:
    the items before the first CSR that fails to load are checked against their meters, and only
    then is its error raised, as when each item was loaded and checked in turn.
    """
    requests: list[csr.CertificateRequest] = []
    failure: KMSError | None = None
    slices = [items[i : i + _CSR_SLICE] for i in range(0, len(items), _CSR_SLICE)]
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="kms-issue-csr") as workers:
        loads = workers.map(_load_csrs, slices, [phases] * len(slices))
        for loaded, error in loads:  # in order: the first error first
            requests.extend(loaded)
            if error is not None:
                failure = error
                workers.shutdown(cancel_futures=True)  # the slices after it are not needed
                break
    with phases.phase("meters: one query per 500 CSRs"):
        meters = repo.meter_refs_by_system_title(session, [r.system_title for r in requests])
    authorities: dict[int, CertificateAuthority] = {}
    checked = [
        _check(session, item, request, meters.get(request.system_title), authorities, now, phases)
        for item, request in zip(items, requests, strict=False)
    ]
    if failure is not None:
        raise failure
    return checked


def _check(
    session: Session,
    item: CsrItem,
    request: csr.CertificateRequest,
    meter: repo.MeterRef | None,
    authorities: dict[int, CertificateAuthority],
    now: datetime.datetime,
    phases: Phases,
) -> _Checked:
    title = format_system_title(request.system_title)
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
    authority = authorities.get(int(suite))
    if authority is None:
        with phases.phase("CA look-up and usable check (per suite and batch)"):
            authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, int(suite))
            if authority is None:
                raise NotFoundError(
                    f"no active issuing CA for suite {int(suite)}: run scripts/create_issuing_ca.py"
                )
            require_usable(authority, now)
        authorities[int(suite)] = authority
    return _Checked(item, request, meter, authority)


def _order(one: _Checked, issuers: dict[int, issuance.Issuer]) -> issuance.Order:
    return issuance.Order(
        certificate_type=one.item.certificate_type,
        system_title=one.request.system_title,
        public_key=one.request.public_key,
        curve=one.request.curve,
        meter_id=one.meter.id,
        issuer=issuers[one.authority.id],
    )


def _issued(one: _Checked, certificate: issuance.Made) -> IssuedCertificate:
    return IssuedCertificate(
        der=certificate.der,
        serial=certificate.serial,
        system_title=format_system_title(one.request.system_title),
        certificate_type=one.item.certificate_type.cli_name,
        issuer=one.authority.name,
        not_after=certificate.row["not_after"],
        source=one.item.source,
    )


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


# --- reading ----------------------------------------------------------------------------------


#: What lists and ``show`` say of a certificate whose stored status is VALID but whose issuing CA
#: is revoked or expired (:func:`kms.services.common.peers.issuer_valid`): nothing uses it any
#: more (issuance, HLS-7, key agreement, signatures), so it is not shown as VALID. The database
#: keeps VALID: the certificate itself was never revoked, and its issuer's CRL does not list it.
OUT_OF_USE = "OUT_OF_USE"
#: The statuses lists and ``show`` give, and ``list`` filters on: VALID means in use.
SHOWN_STATUSES = (CertificateStatus.VALID.value, OUT_OF_USE, CertificateStatus.REVOKED.value)


def shown_status(session: Session, row: Certificate) -> str:
    """The status lists show: the stored one, but OUT_OF_USE for a VALID certificate whose
    issuer is revoked or expired (a self-signed root has no issuer to judge)."""
    if (
        row.status is CertificateStatus.VALID
        and row.issuer_id is not None
        and not issuer_valid(session, row)
    ):
        return OUT_OF_USE
    return row.status.value


def describe(session: Session, row: Certificate) -> dict[str, object]:
    """A certificate row as plain data (no DER), with its shown status (:func:`shown_status`)."""
    return {
        "serial": row.serial,
        "type": row.kind.value.lower().replace("_", "-"),
        "subject": row.subject,
        "system_title": format_system_title(row.system_title) if row.system_title else None,
        "curve": row.curve,
        "not_before": row.not_before.isoformat(),
        "not_after": row.not_after.isoformat(),
        "status": shown_status(session, row),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revocation_reason": row.revocation_reason,
        "key_label": row.key_label,
    }


def _as_requested(request: CeremonyRequest, serial: str) -> str:
    """``serial`` spelled as ``request`` names it when that is the same number: a request made
    before serials were stored in whole bytes (``1ABC`` for ``01ABC``) still approves it."""
    named = request.parameters.get("serial")
    if isinstance(named, str) and named != serial:
        try:
            if parse_serial(named) == serial:
                return named
        except InputError:
            pass
    return serial


def _by_serial(session: Session, serial: str) -> Certificate:
    row = pki_repo.certificate_by_serial(session, parse_serial(serial))
    if row is None:
        raise NotFoundError(f"no certificate with serial {parse_serial(serial)}")
    return row


# --- revocation and CRLs ------------------------------------------------------------------------


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


class CertificateService:
    """Meter certificates, the chain, revocation and CRLs (module docstring)."""

    def __init__(self, resources: Resources, approvals: ApprovalService) -> None:
        self._resources = resources
        self._approvals = approvals

    def issue(
        self,
        *,
        actor: str,
        items: Sequence[CsrItem],
        progress: Callable[[int], None] | None = None,
        chunk_size: int = 500,
        phases: Phases = NO_PHASES,
    ) -> list[IssuedCertificate]:
        """Issue one certificate per CSR; all or nothing. ``progress`` is told how many more were
        signed after each chunk; ``phases`` (:mod:`kms.phases`) is told the phases of the run,
        for a benchmark's breakdown, and by default records nothing.

        Signature checks dominate once the rest is batched (kms.services.pki.issuance), and pyca
        and the token both release the GIL while they compute: so the CSRs are verified on worker
        threads, and what the token signed is checked on a worker thread while the token signs
        more (:func:`kms.services.pki.issuance.make`). The token and the database are still
        called from this thread only (docs/token.md section 4).
        """
        if not items:
            raise InputError("no CSR to issue a certificate for")
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        config = self._resources.config
        issued: list[IssuedCertificate] = []
        records: list[audit.AuditRecord] = []
        with db.begin() as session:
            now = utcnow()
            checked = _check_all(session, items, now, phases)
            _refuse_duplicates(checked)
            issuers: dict[int, issuance.Issuer] = {}
            for one in checked:
                if one.authority.id not in issuers:
                    with phases.phase("issuer: open once per batch"):
                        issuers[one.authority.id] = issuance.open_issuer(
                            session,
                            one.authority,
                            config.certificate_validity_days,
                            now,
                            phases=phases,
                        )

            def store(start: int, made: list[issuance.Made]) -> None:
                with phases.phase("certificate INSERT (a chunk per call)"):
                    pki_repo.insert_certificates(session, [m.row for m in made])
                for one, certificate in zip(checked[start : start + len(made)], made, strict=True):
                    issued.append(_issued(one, certificate))
                    records.append(
                        audit.AuditRecord(
                            "certificate.issue", issued[-1].system_title, issued[-1].summary()
                        )
                    )
                if progress is not None:
                    progress(len(made))

            orders = [_order(one, issuers) for one in checked]
            issuance.make(hsm, orders, chunk_size=chunk_size, store=store, phases=phases)
            with phases.phase("audit append (hash chain, INSERT)"):
                audit.append(session, actor, records)
        return issued

    def issue_files(
        self,
        csrs: Path,
        out: Path,
        *,
        actor: str,
        certificate_type: CertificateType,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Shape, list[IssuedCertificate]]:
        """Issue for the CSRs of a file, a folder or a JSONL file and write the certificates in
        the same shape (:mod:`kms.formats.csr_batch`); ``out`` is checked writable before
        anything is issued. ``progress`` is told (done, total)."""
        batch = csr_batch.read_csrs(csrs, certificate_type)
        csr_batch.prepare_destination(out, batch.shape)
        total, done = len(batch.items), 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        issued = self.issue(actor=actor, items=batch.items, progress=advance)
        csr_batch.write_certificates(out, batch.shape, issued)
        return batch.shape, issued

    def show(self, serial: str, *, out: Path | None = None) -> tuple[dict[str, object], bytes]:
        """One certificate by serial: its description (with the issuer and
        ``import_certificate``, the security setup method 6 action-request that gives it to a
        meter, in hex) and DER; written to ``out`` too when given (PEM; DER if the name ends in
        .der)."""
        with self._resources.database().begin() as session:
            row = _by_serial(session, serial)
            info = describe(session, row)
            info["issuer"] = (
                pki_repo.certificate_by_id(session, row.issuer_id).subject
                if row.issuer_id is not None
                else row.subject
            )
            der = row.der
        info["import_certificate"] = import_certificate_apdu(der).hex().upper()
        if out is not None:
            write_atomically(out, pem_or_der(der, "CERTIFICATE", out.suffix))
        return info, der

    def chain(self, suite: SecuritySuite) -> list[bytes]:
        """The active issuing CA of ``suite`` and the root (DER, in that order)."""
        with self._resources.database().begin() as session:
            issuing = pki_repo.active_authority(session, AuthorityRole.ISSUING, int(suite))
            if issuing is None:
                raise NotFoundError(f"no active issuing CA for suite {int(suite)}")
            root = pki_repo.active_authority(session, AuthorityRole.ROOT)
            if root is None:
                raise NotFoundError("no root CA")
            return [issuing.certificate.der, root.certificate.der]

    def revoke(
        self,
        *,
        actor: str,
        serial: str,
        reason: str = "unspecified",
        request: CeremonyRequest | None = None,
        approvals: Sequence[ApprovalFile] = (),
    ) -> dict[str, object]:
        """Mark a certificate revoked; audited.

        Revoking a CA certificate retires its CA and takes every certificate under it out of use
        (issuance, HLS-7, key agreement, signatures). With ``request`` and ``approvals`` it is a
        ``revoke-ca-certificate`` ceremony naming the serial and the reason, verified like every
        other (the audit record names the officers); without them it is refused where the ceremony
        policy says ``ca_revocation_ceremony``, and otherwise runs on the operator's word (an
        emergency must not wait for officers), its audit record saying no one approved it. A
        meter's or an end entity's certificate takes no request."""
        if reason not in REVOCATION_REASONS:
            raise InputError(
                f"unknown revocation reason {reason!r}; one of {', '.join(REVOCATION_REASONS)}",
                field="reason",
            )
        with self._resources.database().begin() as session:
            row = _by_serial(session, serial)
            if row.status is CertificateStatus.REVOKED:
                raise ConflictError(f"certificate {row.serial} is already revoked")
            if row.issuer_id is None:
                raise ConflictError(
                    "the root certificate cannot be revoked by a CRL; withdraw it as trust anchor"
                )
            details: dict[str, object] = {}
            if row.kind is CertificateKind.CA:
                if request is not None:
                    used = self._approvals.verify(
                        session,
                        request,
                        approvals,
                        ceremony="revoke-ca-certificate",
                        parameters={"serial": _as_requested(request, row.serial), "reason": reason},
                    )
                    details = approvers(used)
                elif approvals:
                    raise InputError("approvals need the request they approve")
                elif self._approvals.ca_revocation_needs_ceremony(session):
                    raise ApprovalError(
                        f"certificate {row.serial} is a CA certificate and the ceremony policy "
                        "(ca_revocation_ceremony) makes revoking it a revoke-ca-certificate "
                        "ceremony: kms ceremony request revoke-ca-certificate "
                        f"--serial {row.serial} --reason {reason.replace('_', '-')}, then the "
                        "officers' approvals"
                    )
                else:
                    details = {"approved_by": []}
            elif request is not None or approvals:
                raise InputError(
                    f"certificate {row.serial} is not a CA certificate: its revocation takes no "
                    "ceremony request or approvals"
                )
            now = utcnow()
            row.status = CertificateStatus.REVOKED
            row.revoked_at = now
            row.revocation_reason = reason
            authority = pki_repo.authority_of_certificate(session, row.id)
            if authority is not None:
                pki_repo.retire_authority(session, authority.id, AuthorityState.REVOKED, now)
            out = describe(session, row)
            audit.append(
                session,
                actor,
                [audit.AuditRecord("certificate.revoke", row.serial, {**out, **details})],
            )
            return out

    def issue_crl(
        self,
        *,
        actor: str,
        suite: SecuritySuite | None = None,
        authority_name: str | None = None,
        out: Path | None = None,
    ) -> tuple[bytes, dict[str, object]]:
        """A CRL signed in the token by the suite's active issuing CA (or a named CA, the root
        included), listing every certificate it issued that is revoked; written to ``out`` when
        given (checked writable first, so no cRLNumber is used up for a CRL that cannot be
        written)."""
        if out is not None:
            check_writable(out.parent if str(out.parent) else Path("."))
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        config = self._resources.config
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
                "next_update": (
                    now + datetime.timedelta(days=config.crl_validity_days)
                ).isoformat(),
            }
            audit.append(session, actor, [audit.AuditRecord("crl.issue", authority.name, info)])
        der = bytes(signed.dump())
        if out is not None:
            write_atomically(out, pem_or_der(der, "X509 CRL", out.suffix))
        return der, info

    def list(
        self,
        *,
        system_title: bytes | None = None,
        kind: CertificateKind | None = None,
        status: CertificateStatus | str | None = None,
        limit: int | None = None,
        own: bool = False,
    ) -> list[dict[str, object]]:
        """Certificates as plain data; ``own``: only the KMS's end entities (key in the token).

        ``status`` filters on the shown status (:data:`SHOWN_STATUSES`): VALID is the
        certificates in use, OUT_OF_USE those stored VALID under a revoked or expired CA."""
        wanted = status.value if isinstance(status, CertificateStatus) else status
        if wanted is not None and wanted not in SHOWN_STATUSES:
            raise InputError(
                f"unknown certificate status {wanted!r}; one of {', '.join(SHOWN_STATUSES)}",
                field="status",
            )
        stored = CertificateStatus.REVOKED if wanted == "REVOKED" else CertificateStatus.VALID
        with self._resources.database().begin() as session:
            rows = pki_repo.list_certificates(
                session,
                system_title=system_title,
                kind=kind,
                status=stored if wanted is not None else None,
                # VALID and OUT_OF_USE share the stored status: the limit applies after the split.
                limit=limit if wanted in (None, "REVOKED") else None,
            )
            if own:
                rows = [
                    r for r in rows if r.key_label is not None and r.kind is not CertificateKind.CA
                ]
            described = [describe(session, row) for row in rows]
        if wanted is not None:
            described = [d for d in described if d["status"] == wanted]
        return described[:limit] if limit is not None else described


def pem_or_der(der: bytes, kind: str, suffix: str) -> bytes:
    """File bytes for a certificate or CRL: DER when the file name ends in .der, else PEM."""
    return encoding.pem_or_der(der, kind, suffix)
