"""kms.pki.crl: CRLs that pyca and OpenSSL accept, revocation OpenSSL enforces, strict loading."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import core, crl, x509
from cryptography import x509 as cx509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki import ca, encoding, profiles
from kms.pki.crl import (
    RevokedCertificate,
    crl_tbs,
    load_crl,
    revocation_check,
    sign_crl,
    verify_crl,
)
from tests.pki.support import (
    AT,
    ISSUING_VALIDITY,
    OTHER_ST,
    Pki,
    PycaSigner,
    days,
    make_pki,
    mutate,
    openssl_verify,
    private_key,
    public_key_info,
    serial,
    to_pyca,
)


def issue_crl(
    pki: Pki, curve: str, revoked: list[RevokedCertificate], number: int = 1
) -> crl.CertificateList:
    tbs = crl_tbs(
        issuer=pki.issuing[curve],
        revoked=revoked,
        this_update=AT - days(1),
        next_update=AT + days(30),
        crl_number=number,
    )
    return sign_crl(tbs, PycaSigner(pki.issuing_keys[curve]))


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_pyca_reads_and_verifies_the_crl(pki: Pki, curve: str) -> None:
    leaf = pki.leaf(curve)
    revoked = [
        RevokedCertificate(leaf.serial_number, AT - days(3), "key_compromise"),
        RevokedCertificate(12345678901234567890, AT - days(2)),
        RevokedCertificate(98765432109876543210, AT - days(2), "unspecified"),
    ]
    certificate_list = issue_crl(pki, curve, revoked, number=42)
    parsed = cx509.load_der_x509_crl(certificate_list.dump())
    issuer = to_pyca(pki.issuing[curve])
    assert parsed.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert parsed.issuer == issuer.subject
    assert parsed.last_update_utc == AT - days(1)
    assert parsed.next_update_utc == AT + days(30)
    number = parsed.extensions.get_extension_for_class(cx509.CRLNumber)
    assert number.value.crl_number == 42
    assert not number.critical
    aki = parsed.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == pki.issuing[curve].key_identifier
    entry = parsed.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == AT - days(3)
    reason = entry.extensions.get_extension_for_class(cx509.CRLReason).value.reason
    assert reason is cx509.ReasonFlags.key_compromise
    # no reason, and "unspecified" written as no reason (RFC 5280 5.3.1)
    for serial_number in (12345678901234567890, 98765432109876543210):
        other = parsed.get_revoked_certificate_by_serial_number(serial_number)
        assert other is not None
        assert len(other.extensions) == 0
    verify_crl(certificate_list, pki.issuing[curve])


def test_empty_crl_omits_the_revoked_list(pki: Pki) -> None:
    certificate_list = issue_crl(pki, "P-256", [])
    assert isinstance(certificate_list["tbs_cert_list"]["revoked_certificates"], core.Void)
    assert len(cx509.load_der_x509_crl(certificate_list.dump())) == 0


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_openssl_crl_check(pki: Pki, tmp_path: Path, curve: str) -> None:
    good, bad = pki.leaf(curve, label="good"), pki.leaf(curve, system_title=OTHER_ST, label="bad")
    certificate_list = issue_crl(
        pki, curve, [RevokedCertificate(bad.serial_number, AT - days(5), "key_compromise")]
    )
    crl_pem = encoding.pem_or_der(certificate_list.dump(), "X509 CRL", ".pem")
    chain = {
        "root": encoding.certificate_pem(pki.root),
        "untrusted": encoding.certificate_pem(pki.issuing[curve]),
    }
    accepted = openssl_verify(tmp_path, leaf=encoding.certificate_pem(good), crl=crl_pem, **chain)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    refused = openssl_verify(tmp_path, leaf=encoding.certificate_pem(bad), crl=crl_pem, **chain)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr
    # without -crl_check the revoked leaf still chains: the refusal above is the CRL's doing
    assert openssl_verify(tmp_path, leaf=encoding.certificate_pem(bad), **chain).returncode == 0


def test_crl_after_2049_uses_generalized_time(pki: Pki) -> None:
    tbs = crl_tbs(
        issuer=pki.root,
        revoked=[RevokedCertificate(2**70, datetime(2051, 1, 1, tzinfo=UTC))],
        this_update=datetime(2049, 12, 31, tzinfo=UTC),
        next_update=datetime(2050, 2, 1, tzinfo=UTC),
        crl_number=0,
    )
    assert tbs["this_update"].name == "utc_time"
    assert tbs["next_update"].name == "general_time"
    signed = sign_crl(tbs, PycaSigner(pki.root_key))
    parsed = cx509.load_der_x509_crl(signed.dump())
    assert parsed.next_update_utc == datetime(2050, 2, 1, tzinfo=UTC)
    verify_crl(signed, pki.root)


def test_crl_tbs_caller_bugs(pki: Pki) -> None:
    issuer = pki.issuing["P-256"]
    with pytest.raises(ValueError, match="next_update must be after this_update"):
        crl_tbs(issuer=issuer, revoked=[], this_update=AT, next_update=AT, crl_number=1)
    with pytest.raises(ValueError, match="crl_number must be non-negative"):
        crl_tbs(issuer=issuer, revoked=[], this_update=AT, next_update=AT + days(1), crl_number=-1)
    with pytest.raises(ValueError, match="crl_number must be non-negative and fit 20"):
        crl_tbs(
            issuer=issuer, revoked=[], this_update=AT, next_update=AT + days(1), crl_number=1 << 160
        )
    twice = [RevokedCertificate(2**70, AT), RevokedCertificate(2**70, AT)]
    with pytest.raises(ValueError, match="listed twice"):
        crl_tbs(
            issuer=issuer, revoked=twice, this_update=AT, next_update=AT + days(1), crl_number=1
        )
    with pytest.raises(CertificateProfileError, match="CRL issuer's keyUsage lacks cRLSign"):
        crl_tbs(
            issuer=pki.leaf("P-256"),
            revoked=[],
            this_update=AT,
            next_update=AT + days(1),
            crl_number=1,
        )


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((0, AT), ValueError, "serial number must be positive"),
        ((1 << 160, AT), ValueError, "fit 20 DER octets"),
        ((5, datetime(2030, 1, 1)), ValueError, "revocation_date must be timezone-aware"),
        ((5, AT, "stolen"), ValueError, "unknown CRL reason 'stolen'"),
        (("5", AT), TypeError, "serial number must be int"),
    ],
)
def test_revoked_certificate_validation(
    arguments: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RevokedCertificate(*arguments)  # type: ignore[arg-type]


def test_sign_crl_refuses_the_wrong_signer(pki: Pki) -> None:
    tbs = crl_tbs(
        issuer=pki.issuing["P-256"],
        revoked=[],
        this_update=AT,
        next_update=AT + days(1),
        crl_number=1,
    )
    with pytest.raises(ValueError, match="not the P-384 signer's"):
        sign_crl(tbs, PycaSigner(pki.issuing_keys["P-384"]))


def test_verify_crl_failures(pki: Pki) -> None:
    certificate_list = issue_crl(pki, "P-256", [])
    with pytest.raises(CertificateProfileError, match="does not follow the issuer's P-384 key"):
        verify_crl(certificate_list, pki.issuing["P-384"])
    # same issuer name and key identifier, different key: only the signature can tell
    forged = sign_crl(
        crl_tbs(
            issuer=pki.issuing["P-256"],
            revoked=[],
            this_update=AT,
            next_update=AT + days(1),
            crl_number=2,
        ),
        PycaSigner(private_key("P-256", 71)),
    )
    with pytest.raises(InvalidSignature, match="CRL signature does not verify"):
        verify_crl(forged, pki.issuing["P-256"])
    with pytest.raises(CertificateProfileError, match="CRL issuer name is not the issuer"):
        verify_crl(issue_crl(pki, "P-384", []), _p384_ca_named_differently(pki))


def _p384_ca_named_differently(pki: Pki) -> x509.Certificate:
    return ca.issuing_ca(
        serial_number=serial("renamed"),
        subject=profiles.ca_name("Renamed CA"),
        public_key=public_key_info(pki.issuing_keys["P-384"]),
        issuer=pki.root,
        signer=PycaSigner(pki.root_key),
        validity=ISSUING_VALIDITY,
    )


def test_revocation_check_matches_issuer_and_serial(pki: Pki) -> None:
    leaf_256, leaf_384 = pki.leaf("P-256"), pki.leaf("P-384")
    revoked = [RevokedCertificate(leaf_256.serial_number, AT, "superseded")]
    is_revoked = revocation_check([issue_crl(pki, "P-256", revoked)])
    assert is_revoked(leaf_256)
    assert not is_revoked(pki.leaf("P-256", system_title=OTHER_ST))
    # the same serial under another issuer is another certificate
    also_revoked = [RevokedCertificate(leaf_384.serial_number, AT)]
    assert not revocation_check([issue_crl(pki, "P-256", also_revoked)])(leaf_384)


def test_load_crl_der_and_pem(pki: Pki) -> None:
    certificate_list = issue_crl(pki, "P-256", [])
    der = certificate_list.dump()
    assert load_crl(der).dump() == der
    assert load_crl(encoding.pem_or_der(der, "X509 CRL", ".crl")).dump() == der
    with pytest.raises(InputError, match=r"crl.pem: CRL: bad DER: .*trailing data"):
        load_crl(der + b"\x00", "crl.pem")
    with pytest.raises(InputError, match="PEM block is CERTIFICATE, expected X509 CRL"):
        load_crl(encoding.certificate_pem(pki.root))


_PKI = make_pki()
CRL_BASES = [
    issue_crl(_PKI, "P-256", [RevokedCertificate(2**70, AT, "key_compromise")]).dump(),
    issue_crl(_PKI, "P-384", []).dump(),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_crls_fail_cleanly(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(range(len(CRL_BASES))))
    mutated = mutate(data, CRL_BASES[base])
    try:
        certificate_list = load_crl(mutated, "fuzz")
        verify_crl(certificate_list, _PKI.issuing["P-256" if base == 0 else "P-384"])
        revocation_check([certificate_list])(_PKI.leaf("P-256"))
    except (InputError, CertificateProfileError, InvalidSignature):
        pass


def test_unknown_crl_extension_is_carried_not_parsed(pki: Pki) -> None:
    """A non-critical extension the KMS does not know may hold anything; found by fuzzing:
    reading it as generic BER used to raise a bare ValueError."""
    tbs = crl_tbs(
        issuer=pki.issuing["P-256"],
        revoked=[],
        this_update=AT,
        next_update=AT + days(1),
        crl_number=9,
    )
    extensions = list(tbs["crl_extensions"])
    extensions.append(
        {"extn_id": "1.3.6.1.4.1.99999.3", "critical": False, "extn_value": b"\x30\x05"}
    )
    tbs["crl_extensions"] = extensions
    certificate_list = sign_crl(tbs, PycaSigner(pki.issuing_keys["P-256"]))
    loaded = load_crl(certificate_list.dump())
    verify_crl(loaded, pki.issuing["P-256"])
    assert cx509.load_der_x509_crl(loaded.dump()).is_signature_valid(
        to_pyca(pki.issuing["P-256"]).public_key()  # type: ignore[arg-type]
    )
