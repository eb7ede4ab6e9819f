"""Batch issuance (kms.services.pki.issuance): the first certificate of each issuer and type goes
through the full profile check and every other one is filled into its template, and the batch
still holds only certificates the checker, pyca and path validation accept; a bad token
signature or an issuer off the root's path refuses the whole batch."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kms.db import AuthorityRole, CertificateAuthority, CertificateKind
from kms.db import pki_repository as pki_repo
from kms.errors import InputError, InvalidCertificatePath, InvalidSignature, NotFoundError
from kms.formats.csr_batch import CsrItem
from kms.pki import ca, encoding, path, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import peers
from kms.services.pki import authorities, certificates, issuance
from tests.kms_fixtures import Pki, meter_csr, provision_meter
from tests.pki.support import PycaSigner, public_key_info, serial

CURVES = {1: ec.SECP256R1(), 2: ec.SECP384R1()}


TITLES: dict[str, bytes] = {}


def _batch(pki: Pki, tmp_path: Path, meters: dict[int, int]) -> list[CsrItem]:
    """A CSR of every type for ``count`` meters of each suite in ``meters``; TITLES maps each
    item's source to its meter's system title."""
    items = []
    for suite, count in meters.items():
        for index in range(count):
            title = provision_meter(pki.kms, tmp_path, 100 * suite + index, suite)
            for kind in CertificateType:
                csr, _key = meter_csr(title, CURVES[suite])
                source = f"s{suite}m{index}-{kind.cli_name}"
                TITLES[source] = title
                items.append(CsrItem(csr, source, kind))
    return items


def _issue(pki: Pki, items: list[CsrItem], **options: Any) -> list[certificates.IssuedCertificate]:
    kms = pki.kms
    return kms.services.certificates.issue(actor="pytest", items=items, **options)


def _certificate_of(authority: CertificateAuthority | None) -> Any:
    assert authority is not None
    return encoding.load_certificate(authority.certificate.der)


def _stored(pki: Pki) -> int:
    with pki.kms.db.begin() as session:
        rows = pki_repo.list_certificates(session)
        return len([row for row in rows if row.kind is not CertificateKind.CA])


def test_a_mixed_batch_is_checked_in_full_once_per_issuer_and_type(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full_checks: list[tuple[str, CertificateType]] = []
    original = profiles.check_certificate

    def counted(certificate: Any, **kwargs: Any) -> None:
        full_checks.append(
            (kwargs["issuer"].subject.native["common_name"], kwargs["certificate_type"])
        )
        original(certificate, **kwargs)

    monkeypatch.setattr(issuance.profiles, "check_certificate", counted)
    monkeypatch.setattr(issuance, "SIGN_SLICE", 2)  # many slices, checked while others sign
    items = _batch(pki, tmp_path, {1: 4, 2: 3})
    progress: list[int] = []
    issued = _issue(pki, items, chunk_size=5, progress=progress.append)
    assert progress == [5, 5, 5, 5, 1]
    assert len(issued) == len(items) == 21
    assert len(full_checks) == len(set(full_checks)) == 6  # 2 issuers x 3 types
    kms = pki.kms
    with kms.db.begin() as session:
        root = _certificate_of(pki_repo.active_authority(session, AuthorityRole.ROOT))
        chains = {
            suite: (
                _certificate_of(pki_repo.active_authority(session, AuthorityRole.ISSUING, suite)),
                root,
            )
            for suite in (1, 2)
        }
        rows = {row.serial: row for row in pki_repo.list_certificates(session)}
    for item, one in zip(items, issued, strict=True):
        suite = 1 if item.source.startswith("s1") else 2
        issuer, root = chains[suite]
        certificate = encoding.load_certificate(one.der)
        profiles.check_certificate(
            certificate,
            issuer=issuer,
            certificate_type=item.certificate_type,
            system_title=TITLES[item.source],
            is_ca=False,
        )
        path.validate_path(certificate, [issuer], root, at=rows[one.serial].not_before)
        x509.load_der_x509_certificate(one.der).verify_directly_issued_by(
            x509.load_der_x509_certificate(issuer.dump())
        )
        parsed = authorities.certificate_row(
            certificate,
            peers.KIND_OF_TYPE[item.certificate_type],
            issuer_id=rows[one.serial].issuer_id,
        )
        stored = rows[one.serial]
        for name in ("serial", "kind", "subject", "system_title", "curve", "der", "not_before",
                     "not_after", "status"):  # fmt: skip
            assert getattr(stored, name) == getattr(parsed, name), name
    assert len({one.serial for one in issued}) == 21


def test_a_bad_token_signature_on_a_templated_certificate_refuses_the_batch(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _batch(pki, tmp_path, {1: 2})
    hsm = pki.kms.hsm
    original = hsm.sign_digests

    def flipped_last(key: Any, digests: list[bytes]) -> list[bytes]:
        signatures = original(key, digests)
        last = bytearray(signatures[-1])
        last[-1] ^= 0x01
        return [*signatures[:-1], bytes(last)]

    monkeypatch.setattr(hsm, "sign_digests", flipped_last)
    with pytest.raises(InvalidSignature, match="does not verify with the issuer's key"):
        _issue(pki, items)  # the last is the second of its type: a templated certificate
    assert _stored(pki) == 0


def test_an_issuer_that_does_not_chain_to_the_root_issues_nothing(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    with kms.db.begin() as session:
        root = pki_repo.active_authority(session, AuthorityRole.ROOT)
        assert root is not None
        genuine = encoding.load_certificate(root.certificate.der)
        key = ec.generate_private_key(ec.SECP384R1())
        impostor = ca.self_signed_root(  # the root's name, another key
            serial_number=serial("impostor"),
            subject=genuine.subject,
            public_key=public_key_info(key),
            signer=PycaSigner(key),
            validity=profiles.Validity(
                genuine["tbs_certificate"]["validity"]["not_before"].native,
                genuine["tbs_certificate"]["validity"]["not_after"].native,
            ),
        )
        root.certificate.der = impostor.dump()
    with pytest.raises(InvalidCertificatePath, match="does not reach the configured trust anchor"):
        _issue(pki, _batch(pki, tmp_path, {1: 1}))
    assert _stored(pki) == 0


def test_the_first_bad_item_is_the_one_named(pki: Pki, tmp_path: Path) -> None:
    """CSRs are loaded on worker threads and meters looked up in one query, yet the error is
    the one a walk through the items in order meets first."""
    good = _batch(pki, tmp_path, {1: 2})[:2]
    forged = bytearray(good[1].data)
    forged[-1] ^= 0x01  # the last octet of the signature
    unknown, _key = meter_csr(bytes.fromhex("4D4D4D00000000FE"), CURVES[1])
    kind = CertificateType.DIGITAL_SIGNATURE
    broken = CsrItem(b"\x30\x03\x02\x01", "broken", kind)
    cases = [
        ([good[0], CsrItem(bytes(forged), "forged", kind), broken], InvalidSignature, "CSR sig"),
        ([good[0], broken, CsrItem(bytes(forged), "forged", kind)], InputError, "broken: CSR"),
        ([CsrItem(unknown, "unknown", kind), broken], NotFoundError, "unknown: unknown meter"),
        ([broken, CsrItem(unknown, "unknown", kind)], InputError, "broken: CSR"),
    ]
    for items, error, message in cases:
        with pytest.raises(error, match=message):
            _issue(pki, items)
    assert _stored(pki) == 0


class _Recorder:
    """A kms.phases.Phases hook that records each phase's name, thread and nesting."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, int]] = []
        self._depth = threading.local()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        self.seen.append((name, threading.current_thread() is threading.main_thread(), depth))
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth


def test_the_phases_hook_is_told_every_phase_and_changes_nothing(pki: Pki, tmp_path: Path) -> None:
    items = _batch(pki, tmp_path, {1: 2})
    recorder = _Recorder()
    issued = _issue(pki, items, phases=recorder)
    assert len(issued) == len(items) == 6
    names = {name for name, _main, _depth in recorder.seen}
    assert {
        "CSR: decode, checks",
        "CSR: signature verify (pyca)",
        "meters: one query per 500 CSRs",
        "CA look-up and usable check (per suite and batch)",
        "issuer: open once per batch",
        "issuer: path validation to the root",
        "token: random (serials of a slice)",
        "TBS build (asn1crypto; first of a group)",
        "token: ECDSA sign (a slice per call)",
        "certificate DER (by hand)",
        "profile check (first of a group)",
        "certificate row (dict)",
        "certificate row cross-check (first of a type)",
        "certificate INSERT (a chunk per call)",
        "audit append (hash chain, INSERT)",
    } <= names
    on_main = {name for name, main, _depth in recorder.seen if main}
    assert "token: ECDSA sign (a slice per call)" in on_main  # the token is called here only
    assert "certificate DER (by hand)" not in on_main  # the checker thread's
    nested = {name for name, _main, depth in recorder.seen if depth}
    assert nested == {"CSR: signature verify (pyca)", "issuer: path validation to the root"}
    assert len(_issue(pki, _batch(pki, tmp_path, {2: 1}))) == 3  # the default hook: no-op
