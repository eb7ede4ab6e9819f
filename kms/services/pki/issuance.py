"""Signing a checked batch of end-entity certificates: the part of
:func:`kms.services.pki.certificates.issue` after every CSR, meter and issuing CA has been checked.

Issuance is a batch job (a field roll-out asks for thousands of certificates at once), so what
can be paid once per batch or per chunk is: the issuing CA's path to the root is validated once
per batch (:func:`open_issuer`); a chunk's serial numbers come from one call to the token's RNG,
its digests are signed back to back in one token call (:meth:`kms.hsm.Hsm.sign_digests`) and its
rows go to the database in one INSERT (:func:`kms.db.pki_repository.insert_certificates`).

What is still done per certificate is what can differ between two certificates: the
TBSCertificate (serial, subject, key; filled into a template, :mod:`kms.pki.template`), the
token's signature, and the KMS's own check of the result: the full Green Book profile check
(:func:`kms.pki.profiles.check_certificate`) for the first certificate of each group, the
signature under the issuer's key for every one.

Certificates are made in two steps, :func:`sign` (the token) and :func:`check` (no token, no
database), so that :func:`make` can check what the token signed on a worker thread while the
token signs more.

Each function takes an optional ``phases`` hook (:mod:`kms.phases`) that is told the phases a
benchmark breaks issuance into (token random, TBS build or fill, token signature, certificate
DER, signature and profile checks, rows); by default it records nothing.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import keys, x509  # type: ignore[import-untyped, unused-ignore]

from kms.db import (
    AuthorityRole,
    AuthorityState,
    CertificateAuthority,
    CertificateStatus,
    Session,
)
from kms.db import pki_repository as pki_repo
from kms.errors import InvalidSignature, NotFoundError
from kms.hsm import Hsm, TokenKey
from kms.phases import NO_PHASES, Phases
from kms.pki import ecdsa, encoding, path, profiles, template
from kms.pki.profiles import CertificateType
from kms.services.common.peers import KIND_OF_TYPE
from kms.services.pki.authorities import (
    authority_certificate,
    certificate_row,
    serial_hex,
    subject_text,
    validity_within,
)

__all__ = ["Issuer", "Made", "Order", "Signed", "check", "make", "open_issuer", "sign"]

#: Random bytes per serial number (kms.pki.names.serial_number_from: 0x01 || 16 bytes).
SERIAL_RANDOM_BYTES = 16
#: Certificates per token call: the unit the token signs and the checker checks, small so that
#: little checking is left after the last signature.
SIGN_SLICE = 64


@dataclass
class Issuer:
    """An issuing CA as one batch uses it, its path to the root validated once.

    ``subjects`` holds, per certificate type, the text around the system title in the subject's
    RFC 4514 rendering, read from the batch's first certificate of that type by pyca: the rows
    of the others are written without parsing them again. ``templates`` holds the DER template
    of each (certificate type, length of the key's DER), made from its first certificate.
    """

    authority: CertificateAuthority
    certificate: x509.Certificate
    validity: profiles.Validity
    key: TokenKey
    hash_name: str
    verifier: ecdsa.Verifier
    subjects: dict[CertificateType, tuple[str, str]] = field(default_factory=dict)
    templates: dict[tuple[CertificateType, int], template.EndEntityTemplate] = field(
        default_factory=dict
    )


def open_issuer(
    session: Session,
    authority: CertificateAuthority,
    validity_days: int,
    now: datetime.datetime,
    *,
    phases: Phases = NO_PHASES,
) -> Issuer:
    """``authority`` ready to issue at ``now`` certificates valid for ``validity_days`` (cut at
    its own end): its certificate validated up to the root.

    Every certificate of the batch is built under this issuer's name and key identifier and
    checked against this issuer's key, so the rest of each certificate's path is the issuer's:
    validating it once (chains to the configured root, valid now, a CA, not revoked) is what
    validating every certificate's whole path did, at a fraction of the cost.
    """
    root = pki_repo.active_authority(session, AuthorityRole.ROOT)
    if root is None:
        raise NotFoundError("no root CA: run scripts/create_root_ca.py first")
    certificate = authority_certificate(authority)

    def revoked(_certificate: x509.Certificate) -> bool:
        return (
            authority.state is AuthorityState.REVOKED
            or authority.certificate.status is CertificateStatus.REVOKED
        )

    with phases.phase("issuer: path validation to the root"):
        path.validate_path(certificate, [], authority_certificate(root), at=now, is_revoked=revoked)
    return Issuer(
        authority=authority,
        certificate=certificate,
        validity=validity_within(now, validity_days, authority.certificate.not_after),
        key=TokenKey(authority.key_label, "private"),
        hash_name=ecdsa.hash_for_curve(authority.curve),
        verifier=ecdsa.Verifier(certificate.public_key),
    )


@dataclass(frozen=True)
class Order:
    """One certificate to make: checked CSR facts, the meter's row id and the issuer."""

    certificate_type: CertificateType
    system_title: bytes
    public_key: keys.PublicKeyInfo
    curve: str
    meter_id: int
    issuer: Issuer


@dataclass(frozen=True)
class Made:
    """A signed and checked certificate: DER, serial (stored form) and its database row."""

    der: bytes
    serial: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Signed:
    """A slice signed in the token and not yet checked: per order its serial number, DER
    TBSCertificate and whether that came from a template, and the token's raw signature."""

    orders: Sequence[Order]
    built: list[tuple[int, bytes, bool]]
    signatures: list[bytes]


def sign(hsm: Hsm, orders: Sequence[Order], phases: Phases = NO_PHASES) -> Signed:
    """The token's part of a slice of orders: serial numbers from one call to its RNG, the
    TBSCertificates, and their signatures, one token call per issuer.

    The first certificate of each (issuer, type, key encoding) is built by asn1crypto
    (:func:`kms.pki.profiles.end_entity_tbs`) and becomes its group's template; the others are
    filled into the template (:mod:`kms.pki.template`): the same bytes, without asn1crypto.
    """
    with phases.phase("token: random (serials of a slice)"):
        randomness = hsm.random(SERIAL_RANDOM_BYTES * len(orders))
    built: list[tuple[int, bytes, bool]] = []
    digests: list[bytes] = []
    for index, order in enumerate(orders):
        cut = index * SERIAL_RANDOM_BYTES
        serial = profiles.serial_number_from(randomness[cut : cut + SERIAL_RANDOM_BYTES])
        tbs_der, templated = _tbs(order, serial, phases)
        built.append((serial, tbs_der, templated))
        digests.append(hashlib.new(order.issuer.hash_name, tbs_der).digest())
    with phases.phase("token: ECDSA sign (a slice per call)"):
        signatures = _sign_by_issuer(hsm, orders, digests)
    return Signed(orders, built, signatures)


def check(signed: Signed, phases: Phases = NO_PHASES) -> list[Made]:
    """The certificates of a signed slice, in order, each checked: the first of each group by
    the full profile checker (which also verifies its signature), every other one by its
    signature under the issuer's key. Raises on the first that fails; nothing is stored then.

    No token and no database here, and the signature checks release the GIL: a worker thread
    checks one slice while the token signs the next (:func:`make`). Slices must be checked in
    the order they were signed: the first certificate of a type teaches its issuer the subject
    text the others' rows use.
    """
    made: list[Made] = []
    for order, (serial, tbs_der, templated), raw in zip(
        signed.orders, signed.built, signed.signatures, strict=True
    ):
        issuer = order.issuer
        with phases.phase("certificate DER (by hand)"):
            der = template.certificate_der(tbs_der, issuer.hash_name, raw)
        if templated:
            with phases.phase("leaf signature verify (pyca; templated)"):
                _verify_signature(issuer, tbs_der, raw)
            with phases.phase("certificate row (dict)"):
                row = _row(order, serial, der)
        else:
            with phases.phase("profile check (first of a group)"):
                certificate = encoding.load_certificate(der, "issued certificate")
                profiles.check_certificate(
                    certificate,
                    issuer=issuer.certificate,
                    certificate_type=order.certificate_type,
                    system_title=order.system_title,
                    is_ca=False,
                )
            with phases.phase("certificate row (dict)"):
                row = _row(order, serial, der)
            if order.certificate_type not in issuer.subjects:
                with phases.phase("certificate row cross-check (first of a type)"):
                    _learn_subject(issuer, order, certificate, row)
        made.append(Made(der, row["serial"], row))
    return made


def make(
    hsm: Hsm,
    orders: Sequence[Order],
    *,
    chunk_size: int,
    store: Callable[[int, list[Made]], None],
    phases: Phases = NO_PHASES,
) -> None:
    """Every order signed and checked, handed to ``store`` a chunk at a time with the index of
    its first order; an order that fails raises, and ``store`` sees no later chunk.

    The token signs slices of :data:`SIGN_SLICE` orders and a checker thread checks each slice
    while the token signs the next: the signature checks (pyca) and the token's signing (C_Sign)
    both release the GIL, so on two cores they run side by side. One checker, so that slices
    are checked in the order they were signed (:func:`check`). ``store`` runs on this thread,
    like every token call.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="kms-issue-check") as checker:
        try:
            waiting: tuple[int, list[Future[list[Made]]]] | None = None
            for start in range(0, len(orders), chunk_size):
                chunk = orders[start : start + chunk_size]
                parts = []
                for first in range(0, len(chunk), SIGN_SLICE):
                    signed = sign(hsm, chunk[first : first + SIGN_SLICE], phases)
                    parts.append(checker.submit(check, signed, phases))
                if waiting is not None:
                    store(waiting[0], [made for part in waiting[1] for made in part.result()])
                waiting = (start, parts)
            if waiting is not None:
                store(waiting[0], [made for part in waiting[1] for made in part.result()])
        except BaseException:
            checker.shutdown(cancel_futures=True)  # the batch is refused: check no more
            raise


def _tbs(order: Order, serial: int, phases: Phases) -> tuple[bytes, bool]:
    """The DER TBSCertificate of ``order``, and whether it came from a template (else from
    asn1crypto, and then it is the first of its group and becomes the group's template)."""
    issuer = order.issuer
    key_der = bytes(order.public_key.dump())
    group = (order.certificate_type, len(key_der))
    found = issuer.templates.get(group)
    if found is not None and found.fits(serial, key_der):
        with phases.phase("TBS fill (template)"):
            return found.tbs(serial, order.system_title, key_der), True
    with phases.phase("TBS build (asn1crypto; first of a group)"):
        tbs_der = bytes(
            profiles.end_entity_tbs(
                serial_number=serial,
                issuer=issuer.certificate,
                system_title=order.system_title,
                public_key=order.public_key,
                certificate_type=order.certificate_type,
                validity=issuer.validity,
            ).dump()
        )
    if found is None:
        issuer.templates[group] = template.EndEntityTemplate.from_tbs(
            tbs_der, serial_number=serial, system_title=order.system_title, public_key_der=key_der
        )
    return tbs_der, False


def _verify_signature(issuer: Issuer, tbs_der: bytes, raw: bytes) -> None:
    """The token's signature checked under the issuer certificate's key, as the profile check
    does: a token key that is not the CA's, or a faulty signature, issues nothing."""
    try:
        issuer.verifier.verify(ecdsa.der_from_raw(raw), tbs_der, issuer.hash_name)
    except InvalidSignature:
        raise InvalidSignature(
            "certificate signature does not verify with the issuer's key"
        ) from None


def _sign_by_issuer(hsm: Hsm, orders: Sequence[Order], digests: Sequence[bytes]) -> list[bytes]:
    """The token's signature of each digest by its order's issuer: one token call per issuer."""
    positions: dict[str, list[int]] = {}
    for index, order in enumerate(orders):
        positions.setdefault(order.issuer.key.label, []).append(index)
    signatures: list[bytes] = [b""] * len(orders)
    for indexes in positions.values():
        key = orders[indexes[0]].issuer.key
        for index, raw in zip(
            indexes, hsm.sign_digests(key, [digests[i] for i in indexes]), strict=True
        ):
            signatures[index] = raw
    return signatures


def _row(order: Order, serial: int, der: bytes) -> dict[str, Any]:
    """The certificate's row from what the KMS put into it, not from parsing it back."""
    issuer = order.issuer
    title = order.system_title.hex().upper()
    prefix, suffix = issuer.subjects.get(order.certificate_type, ("", ""))
    return {
        "serial": serial_hex(serial),
        "issuer_id": issuer.authority.certificate_id,
        "kind": KIND_OF_TYPE[order.certificate_type],
        "subject": prefix + title + suffix,
        "system_title": order.system_title,
        "meter_id": order.meter_id,
        "key_label": None,
        "curve": order.curve,
        "der": der,
        "not_before": issuer.validity.not_before,
        "not_after": issuer.validity.not_after,
        "status": CertificateStatus.VALID,
    }


def _learn_subject(
    issuer: Issuer, order: Order, certificate: x509.Certificate, row: dict[str, Any]
) -> None:
    """Take the subject's text from pyca for the first certificate of a type, and check every
    other field the row was given against the row :func:`certificate_row` parses out of it."""
    text = subject_text(certificate)
    title = order.system_title.hex().upper()
    if text.count(title) != 1:
        raise RuntimeError(f"subject {text!r} does not name system title {title} once")
    before, _, after = text.partition(title)
    issuer.subjects[order.certificate_type] = (before, after)
    row["subject"] = text
    parsed = certificate_row(
        certificate,
        KIND_OF_TYPE[order.certificate_type],
        issuer_id=issuer.authority.certificate_id,
        meter_id=order.meter_id,
    )
    for name, value in row.items():
        if getattr(parsed, name) != value:
            raise RuntimeError(f"certificate row field {name} differs from the certificate's")
