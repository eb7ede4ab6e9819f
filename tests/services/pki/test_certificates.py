"""Meter certificates: issued from CSRs against the meter's record, signed in the token, accepted
by pyca and `openssl verify -crl_check`; every bad input named, nothing issued."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kms.db import AuthorityRole, CertificateStatus
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.security_setup import parse_import_certificate_request
from kms.dlms.suites import SecuritySuite
from kms.errors import (
    ApprovalError,
    CertificateProfileError,
    ConfigError,
    ConflictError,
    InputError,
    InvalidCertificatePath,
    InvalidSignature,
    NotFoundError,
)
from kms.formats.csr_batch import CsrItem
from kms.pki.profiles import CertificateType
from tests.kms_fixtures import Kms, Pki, meter_csr, provision_meter, revoke_ca, services_for

CURVES = {1: ec.SECP256R1(), 2: ec.SECP384R1()}


provision = provision_meter
make_csr = meter_csr


def issue_one(pki: Pki, data: bytes, kind: CertificateType = CertificateType.DIGITAL_SIGNATURE):
    kms = pki.kms
    (issued,) = kms.services.certificates.issue(
        actor="pytest", items=[CsrItem(data, "meter.csr", kind)]
    )
    return issued


def chain_pems(kms: Kms, suite: int) -> list[bytes]:
    return [
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in kms.services.certificates.chain(SecuritySuite(suite))
    ]


def openssl_verify(
    tmp_path: Path, leaf_der: bytes, chain: list[bytes], crls: list[bytes] = ()
) -> subprocess.CompletedProcess[str]:  # type: ignore[assignment]
    (tmp_path / "leaf.pem").write_bytes(
        x509.load_der_x509_certificate(leaf_der).public_bytes(serialization.Encoding.PEM)
    )
    (tmp_path / "issuing.pem").write_bytes(chain[0])
    (tmp_path / "root.pem").write_bytes(chain[1])
    args = ["openssl", "verify", "-CAfile", str(tmp_path / "root.pem")]
    args += ["-untrusted", str(tmp_path / "issuing.pem")]
    if crls:
        (tmp_path / "crl.pem").write_bytes(b"".join(crls))
        args += ["-crl_check", "-CRLfile", str(tmp_path / "crl.pem")]
    args.append(str(tmp_path / "leaf.pem"))
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("suite", [1, 2])
@pytest.mark.parametrize("kind", list(CertificateType))
def test_issued_certificates_verify_with_pyca_and_openssl(
    pki: Pki, tmp_path: Path, suite: int, kind: CertificateType
) -> None:
    title = provision(pki.kms, tmp_path, 1, suite)
    csr, key = make_csr(title, CURVES[suite], der=suite == 1)
    issued = issue_one(pki, csr, kind)
    cert = x509.load_der_x509_certificate(issued.der)
    chain = chain_pems(pki.kms, suite)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(chain[0]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == title.hex().upper()
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature is (kind is not CertificateType.KEY_AGREEMENT)
    assert usage.value.key_agreement is (kind is not CertificateType.DIGITAL_SIGNATURE)
    assert cert.serial_number.bit_length() >= 64
    crl, _info = pki.kms.services.certificates.issue_crl(actor="pytest", suite=SecuritySuite(suite))
    crl_pem = x509.load_der_x509_crl(crl).public_bytes(serialization.Encoding.PEM)
    done = openssl_verify(tmp_path, issued.der, chain, [crl_pem])
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_revoked_certificate_fails_openssl_crl_check(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    title = provision(kms, tmp_path, 2, 1)
    issued = issue_one(pki, make_csr(title, CURVES[1])[0])
    kms.services.certificates.revoke(actor="pytest", serial=issued.serial, reason="key_compromise")
    crl, info = kms.services.certificates.issue_crl(actor="pytest", suite=SecuritySuite(1))
    parsed = x509.load_der_x509_crl(crl)
    assert info["revoked"] == 1
    assert parsed.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is not None
    issuing = x509.load_pem_x509_certificate(chain_pems(kms, 1)[0])
    assert parsed.is_signature_valid(issuing.public_key())
    done = openssl_verify(
        tmp_path, issued.der, chain_pems(kms, 1), [parsed.public_bytes(serialization.Encoding.PEM)]
    )
    assert done.returncode != 0 and "revoked" in (done.stdout + done.stderr)


def test_crl_numbers_only_grow(pki: Pki) -> None:
    kms = pki.kms
    numbers = [
        kms.services.certificates.issue_crl(actor="pytest", suite=SecuritySuite(2))[1]["crl_number"]
        for _ in range(3)
    ]
    assert numbers == [1, 2, 3]


def test_a_batch_is_issued_whole_or_not_at_all(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    good = [make_csr(provision(kms, tmp_path, i, 1), CURVES[1])[0] for i in (10, 11)]
    bad = make_csr(bytes.fromhex("4D4D4D00000000FF"), CURVES[1])[0]  # unknown meter
    items = [
        CsrItem(d, f"csr{i}", CertificateType.DIGITAL_SIGNATURE) for i, d in enumerate([*good, bad])
    ]
    with pytest.raises(NotFoundError, match="csr2: unknown meter 4D4D4D00000000FF"):
        kms.services.certificates.issue(actor="pytest", items=items)
    assert _end_entities(kms) == 0
    progress: list[int] = []
    issued = kms.services.certificates.issue(
        actor="pytest", items=items[:2], progress=progress.append, chunk_size=1
    )
    assert len(issued) == 2 and progress == [1, 1] and _end_entities(kms) == 2


def _end_entities(kms: Kms) -> int:
    with kms.db.begin() as session:
        return len([c for c in pki_repo.list_certificates(session) if c.system_title is not None])


# --- bad input: each named, nothing issued ------------------------------------------------------


def _refused(
    pki: Pki,
    data: bytes,
    error: type[Exception],
    match: str,
    kind=CertificateType.DIGITAL_SIGNATURE,
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        issue_one(pki, data, kind)
    assert _end_entities(pki.kms) == 0


def test_malformed_der_is_an_input_error(pki: Pki) -> None:
    _refused(pki, b"\x30\x03\x02\x01", InputError, "meter.csr")


def test_a_csr_with_a_bad_signature_is_refused(pki: Pki, tmp_path: Path) -> None:
    title = provision(pki.kms, tmp_path, 3, 1)
    csr = make_csr(title, CURVES[1])[0]
    text = title.hex().upper().encode()
    edited = csr.replace(text, text[:-1] + (b"4" if text[-1:] != b"4" else b"5"))  # signed bytes
    assert edited != csr
    _refused(pki, edited, InvalidSignature, "^meter.csr: CSR signature does not verify")


def test_a_wrong_curve_for_the_suite_is_refused(pki: Pki, tmp_path: Path) -> None:
    title = provision(pki.kms, tmp_path, 4, 1)
    _refused(pki, make_csr(title, CURVES[2])[0], CertificateProfileError, "P-384, meter .* suite 1")


def test_a_cn_that_is_not_a_system_title_is_refused(pki: Pki, tmp_path: Path) -> None:
    title = provision(pki.kms, tmp_path, 5, 1)
    _refused(
        pki,
        make_csr(title, CURVES[1], cn="meter-5")[0],
        CertificateProfileError,
        "^meter.csr: .*meter-5",
    )


def test_an_unknown_meter_is_refused(pki: Pki) -> None:
    _refused(
        pki,
        make_csr(bytes.fromhex("4D4D4D0000ABCDEF"), CURVES[1])[0],
        NotFoundError,
        "unknown meter",
    )


def test_a_suite_0_meter_gets_no_certificate(pki: Pki, tmp_path: Path) -> None:
    title = provision(pki.kms, tmp_path, 6, 0)
    _refused(pki, make_csr(title, CURVES[1])[0], CertificateProfileError, "suite 0")


def test_a_revoked_issuer_issues_nothing(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    with kms.db.begin() as session:
        serial = pki_repo.active_authority(session, AuthorityRole.ISSUING, 1).certificate.serial  # type: ignore[union-attr]
    revoke_ca(pki, serial)
    title = provision(kms, tmp_path, 7, 1)
    _refused(pki, make_csr(title, CURVES[1])[0], NotFoundError, "no active issuing CA for suite 1")


def test_an_expired_issuer_is_named(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    with kms.db.begin() as session:
        authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, 1)
        assert authority is not None
        authority.certificate.not_after = utcnow().replace(year=2001)
    title = provision(kms, tmp_path, 8, 1)
    _refused(pki, make_csr(title, CURVES[1])[0], InvalidCertificatePath, "expired")


def test_two_csrs_of_one_meter_and_type_in_a_batch_conflict(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    title = provision(kms, tmp_path, 9, 1)
    items = [CsrItem(make_csr(title, CURVES[1])[0], f"c{i}", CertificateType.TLS) for i in (1, 2)]
    with pytest.raises(ConflictError, match="c2: a second tls CSR"):
        kms.services.certificates.issue(actor="pytest", items=items)


def test_revoking_twice_or_an_unknown_serial(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    issued = issue_one(pki, make_csr(provision(kms, tmp_path, 12, 2), CURVES[2])[0])
    kms.services.certificates.revoke(actor="pytest", serial=issued.serial.lower())
    with pytest.raises(ConflictError, match="already revoked"):
        kms.services.certificates.revoke(actor="pytest", serial=issued.serial)
    with pytest.raises(NotFoundError, match="no certificate with serial ABCDEF"):
        kms.services.certificates.revoke(actor="pytest", serial="00:ab:cd:ef")
    with pytest.raises(InputError, match="hexadecimal"):
        kms.services.certificates.revoke(actor="pytest", serial="xyz")
    rows = kms.services.certificates.list(status=CertificateStatus.REVOKED)
    assert [r["serial"] for r in rows] == [issued.serial]


def _issuing_serial(kms: Kms, suite: int) -> str:
    with kms.db.begin() as session:
        issuing = pki_repo.active_authority(session, AuthorityRole.ISSUING, suite)
        assert issuing is not None
        return issuing.certificate.serial


def _status(kms: Kms, serial: str) -> CertificateStatus:
    with kms.db.begin() as session:
        row = pki_repo.certificate_by_serial(session, serial)
        assert row is not None
        return row.status


def _revocation_events(kms: Kms) -> list[dict[str, object]]:
    with kms.db.begin() as session:
        return [
            json.loads(e.details)
            for e in repo.audit_events(session)
            if e.operation == "certificate.revoke"
        ]


def test_a_ca_certificate_is_revoked_by_its_ceremony(pki: Pki) -> None:
    kms = pki.kms
    serial = _issuing_serial(kms, 1)

    def revoke(request, files, reason="ca_compromise"):  # type: ignore[no-untyped-def]
        return kms.services.certificates.revoke(
            actor="pytest", serial=serial, reason=reason, request=request, approvals=files
        )

    one = pki.officers.approve(
        kms, "revoke-ca-certificate", {"serial": serial, "reason": "ca_compromise"}, ["alice"]
    )
    with pytest.raises(ApprovalError, match="needs 2 officer approvals"):
        revoke(*one)
    superseded = pki.officers.approve(
        kms, "revoke-ca-certificate", {"serial": serial, "reason": "superseded"}
    )
    with pytest.raises(ApprovalError, match="the request approves"):
        revoke(*superseded)
    other = pki.officers.approve(
        kms,
        "revoke-ca-certificate",
        {"serial": _issuing_serial(kms, 2), "reason": "ca_compromise"},
    )
    with pytest.raises(ApprovalError, match="the request approves"):
        revoke(*other)
    with pytest.raises(InputError, match="approvals need the request"):
        revoke(None, other[1])
    assert _status(kms, serial) is CertificateStatus.VALID  # nothing changed, nothing claimed
    with kms.db.begin() as session:
        for refused, _files in (one, superseded, other):
            assert not pki_repo.request_used(session, refused.request_id)

    request, files = pki.officers.approve(
        kms, "revoke-ca-certificate", {"serial": serial, "reason": "ca_compromise"}
    )
    assert revoke(request, files)["status"] == "REVOKED"
    assert _status(kms, serial) is CertificateStatus.REVOKED
    (event,) = _revocation_events(kms)
    assert event["approved_by"] == ["alice", "bob"]
    assert event["request_id"] == request.request_id
    with kms.db.begin() as session:
        assert pki_repo.active_authority(session, AuthorityRole.ISSUING, 1) is None
    assert _status(kms, _issuing_serial(kms, 2)) is CertificateStatus.VALID  # suite 2 untouched


def test_the_ceremony_policy_decides_whether_a_ca_revocation_needs_approvals(pki: Pki) -> None:
    kms = pki.kms
    serial1, serial2 = _issuing_serial(kms, 1), _issuing_serial(kms, 2)
    # By default (the policy fixed when the first officer was registered) a CA certificate is
    # revoked on the operator's word, and the audit record says no one approved it.
    kms.services.certificates.revoke(actor="pytest", serial=serial1, reason="ca_compromise")
    (event,) = _revocation_events(kms)
    assert (event["serial"], event["approved_by"]) == (serial1, [])
    # A deployment that fixed ca_revocation_ceremony = true at its first officer.
    with kms.db.begin() as session:
        row = pki_repo.ceremony_policy(session)
        assert row is not None and row.ca_revocation_ceremony is False
        row.ca_revocation_ceremony = True
    strict = dataclasses.replace(kms.config, ca_revocation_ceremony=True)
    with pytest.raises(ApprovalError, match="ca_revocation_ceremony.*--serial " + serial2):
        services_for(kms, strict).certificates.revoke(
            actor="pytest", serial=serial2, reason="superseded"
        )
    # An environment that says otherwise does not lower the policy: it is refused outright.
    with pytest.raises(ConfigError, match="fixed at true"):
        kms.services.certificates.revoke(actor="pytest", serial=serial2, reason="superseded")
    assert _status(kms, serial2) is CertificateStatus.VALID
    request, files = pki.officers.approve(
        kms, "revoke-ca-certificate", {"serial": serial2, "reason": "superseded"}
    )
    services_for(kms, strict).certificates.revoke(
        actor="pytest", serial=serial2, reason="superseded", request=request, approvals=files
    )
    assert _status(kms, serial2) is CertificateStatus.REVOKED


def test_without_a_fixed_policy_the_configuration_decides_and_nothing_is_fixed(
    pki: Pki,
) -> None:
    """A database whose CAs predate the policy row: a revocation does not fix the policy."""
    kms = pki.kms
    serial = _issuing_serial(kms, 1)
    with kms.db.begin() as session:
        row = pki_repo.ceremony_policy(session)
        assert row is not None
        session.delete(row)
    strict = dataclasses.replace(kms.config, ca_revocation_ceremony=True)
    with pytest.raises(ApprovalError, match="ca_revocation_ceremony"):
        services_for(kms, strict).certificates.revoke(
            actor="pytest", serial=serial, reason="ca_compromise"
        )
    kms.services.certificates.revoke(actor="pytest", serial=serial, reason="ca_compromise")
    assert _status(kms, serial) is CertificateStatus.REVOKED
    with kms.db.begin() as session:
        assert pki_repo.ceremony_policy(session) is None


def test_an_end_entity_revocation_takes_no_ceremony_request(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    issued = issue_one(pki, make_csr(provision(kms, tmp_path, 13, 1), CURVES[1])[0])
    request, files = pki.officers.approve(
        kms, "revoke-ca-certificate", {"serial": issued.serial, "reason": "unspecified"}
    )
    with pytest.raises(InputError, match="not a CA certificate"):
        kms.services.certificates.revoke(
            actor="pytest", serial=issued.serial, request=request, approvals=files
        )
    assert _status(kms, issued.serial) is CertificateStatus.VALID


def test_show_gives_the_import_certificate_apdu_of_the_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    """The method-6 action-request `kms cert show --json` promises, for a meter's certificate and
    for a CA certificate a meter must trust."""
    kms = pki.kms
    issued = issue_one(pki, make_csr(provision(kms, tmp_path, 14, 1), CURVES[1])[0])
    for serial in (issued.serial, _issuing_serial(kms, 1)):
        info, der = kms.services.certificates.show(serial)
        apdu = bytes.fromhex(str(info["import_certificate"]))
        assert parse_import_certificate_request(apdu).parameter == der


def test_certificates_under_a_revoked_or_expired_ca_show_as_out_of_use(
    pki: Pki, tmp_path: Path
) -> None:
    kms = pki.kms
    certs = kms.services.certificates
    under_revoked = issue_one(pki, make_csr(provision(kms, tmp_path, 15, 1), CURVES[1])[0])
    under_expired = issue_one(pki, make_csr(provision(kms, tmp_path, 16, 2), CURVES[2])[0])
    in_use = {under_revoked.serial, under_expired.serial}
    assert {r["serial"] for r in certs.list(status=CertificateStatus.VALID)} >= in_use

    revoke_ca(pki, _issuing_serial(kms, 1))
    with kms.db.begin() as session:
        authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, 2)
        assert authority is not None
        authority.certificate.not_after = utcnow().replace(year=2001)

    shown = {r["serial"]: r["status"] for r in certs.list()}
    assert shown[under_revoked.serial] == shown[under_expired.serial] == "OUT_OF_USE"
    assert certs.show(under_revoked.serial)[0]["status"] == "OUT_OF_USE"
    # --status valid keeps meaning "in use"; out-of-use and revoked are their own filters.
    valid = {r["serial"] for r in certs.list(status=CertificateStatus.VALID)}
    assert not valid & in_use and _issuing_serial(kms, 2) in valid  # judged by its issuer
    assert {r["serial"] for r in certs.list(status="OUT_OF_USE")} == in_use
    assert [r["serial"] for r in certs.list(status="OUT_OF_USE", limit=1)] == [under_revoked.serial]
    assert [r["status"] for r in certs.list(status=CertificateStatus.REVOKED)] == ["REVOKED"]
    # The database's status is unchanged: neither certificate was revoked.
    assert _status(kms, under_revoked.serial) is CertificateStatus.VALID
    assert _status(kms, under_expired.serial) is CertificateStatus.VALID


def test_serials_are_whole_bytes_as_openssl_prints_them_and_either_form_is_accepted(
    pki: Pki, tmp_path: Path
) -> None:
    kms = pki.kms
    issued = issue_one(pki, make_csr(provision(kms, tmp_path, 17, 1), CURVES[1])[0])
    number = x509.load_der_x509_certificate(issued.der).serial_number
    leaf = tmp_path / "leaf.der"
    leaf.write_bytes(issued.der)
    printed = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-in", str(leaf)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert printed == f"serial={issued.serial}" and len(issued.serial) % 2 == 0
    assert issued.serial == f"{number:0{2 * ((number.bit_length() + 7) // 8)}X}"
    assert [r["serial"] for r in kms.services.certificates.list()][-1] == issued.serial
    odd = f"{number:X}".lower()
    colons = ":".join(issued.serial[i : i + 2] for i in range(0, len(issued.serial), 2))
    for typed in (odd, colons, "0x" + issued.serial):
        assert kms.services.certificates.show(typed)[0]["serial"] == issued.serial


def test_a_revocation_request_made_before_whole_byte_serials_still_approves(pki: Pki) -> None:
    kms = pki.kms
    serial = _issuing_serial(kms, 1)
    assert serial.startswith("0") and len(serial) % 2 == 0
    request, files = pki.officers.approve(
        kms, "revoke-ca-certificate", {"serial": serial[1:], "reason": "ca_compromise"}
    )
    kms.services.certificates.revoke(
        actor="pytest", serial=serial, reason="ca_compromise", request=request, approvals=files
    )
    assert _status(kms, serial) is CertificateStatus.REVOKED
