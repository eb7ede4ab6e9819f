"""kms.pki.profiles: what end_entity_tbs and ca_tbs put in a certificate, read back by pyca."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from kms.errors import CertificateProfileError
from kms.pki import ca, profiles
from kms.pki.profiles import CertificateEntity, CertificateType, Validity
from tests.pki.support import (
    LEAF_VALIDITY,
    METER_ST,
    OTHER_ST,
    ROOT_VALIDITY,
    Pki,
    PycaSigner,
    private_key,
    public_key_info,
    serial,
    to_pyca,
)

USAGE = {
    CertificateType.DIGITAL_SIGNATURE: (True, False),
    CertificateType.KEY_AGREEMENT: (False, True),
    CertificateType.TLS: (True, True),
}


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
@pytest.mark.parametrize("certificate_type", list(CertificateType))
def test_end_entity_extensions(pki: Pki, curve: str, certificate_type: CertificateType) -> None:
    leaf = to_pyca(pki.leaf(curve, certificate_type))
    issuer = to_pyca(pki.issuing[curve])
    leaf.verify_directly_issued_by(issuer)
    assert leaf.version is cx509.Version.v3
    assert leaf.subject.rfc4514_string() == "CN=4D4D4D0000BC614E"
    usage = leaf.extensions.get_extension_for_class(cx509.KeyUsage)
    assert usage.critical
    assert (usage.value.digital_signature, usage.value.key_agreement) == USAGE[certificate_type]
    assert not any((usage.value.key_cert_sign, usage.value.crl_sign, usage.value.key_encipherment))
    ski = leaf.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == cx509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = leaf.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == pki.issuing[curve].key_identifier
    assert aki.value.authority_cert_issuer is None
    with pytest.raises(cx509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(cx509.BasicConstraints)
    if certificate_type is CertificateType.TLS:
        eku = leaf.extensions.get_extension_for_class(cx509.ExtendedKeyUsage)
        assert not eku.critical
        assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    else:
        with pytest.raises(cx509.ExtensionNotFound):
            leaf.extensions.get_extension_for_class(cx509.ExtendedKeyUsage)
    assert len(leaf.extensions) == (4 if certificate_type is CertificateType.TLS else 3)


def test_signature_algorithm_follows_the_issuer_key(pki: Pki) -> None:
    # suite 1 meter under the P-256 issuing CA, which sits under the P-384 root
    assert to_pyca(pki.leaf("P-256")).signature_algorithm_oid == (
        SignatureAlgorithmOID.ECDSA_WITH_SHA256
    )
    assert to_pyca(pki.issuing["P-256"]).signature_algorithm_oid == (
        SignatureAlgorithmOID.ECDSA_WITH_SHA384
    )
    # a P-256 meter key directly under a P-384 CA is signed with SHA-384 (notes section 11)
    tbs = profiles.end_entity_tbs(
        serial_number=serial("p256-under-p384"),
        issuer=pki.issuing["P-384"],
        system_title=METER_ST,
        public_key=public_key_info(pki.meter_keys["P-256"]),
        certificate_type=CertificateType.KEY_AGREEMENT,
        validity=LEAF_VALIDITY,
    )
    assert tbs["signature"]["algorithm"].native == "sha384_ecdsa"
    assert tbs["signature"]["parameters"].native is None


def test_p384_key_under_p256_ca_is_refused(pki: Pki) -> None:
    with pytest.raises(
        CertificateProfileError, match="a P-384 certificate must be signed by a P-384"
    ):
        profiles.end_entity_tbs(
            serial_number=serial("x"),
            issuer=pki.issuing["P-256"],
            system_title=METER_ST,
            public_key=public_key_info(pki.meter_keys["P-384"]),
            certificate_type=CertificateType.DIGITAL_SIGNATURE,
            validity=LEAF_VALIDITY,
        )


def test_end_entity_needs_a_ca_issuer_with_a_key_identifier(pki: Pki) -> None:
    arguments = {
        "serial_number": serial("x"),
        "system_title": OTHER_ST,
        "public_key": public_key_info(pki.meter_keys["P-256"]),
        "certificate_type": CertificateType.DIGITAL_SIGNATURE,
        "validity": LEAF_VALIDITY,
    }
    with pytest.raises(CertificateProfileError, match="issuer is not a CA certificate"):
        profiles.end_entity_tbs(issuer=pki.leaf("P-256"), **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 1 << 159])
def test_serial_number_range(pki: Pki, bad: int) -> None:
    with pytest.raises(ValueError, match="positive and fit 20 DER octets"):
        profiles.end_entity_tbs(
            serial_number=bad,
            issuer=pki.issuing["P-256"],
            system_title=METER_ST,
            public_key=public_key_info(pki.meter_keys["P-256"]),
            certificate_type=CertificateType.DIGITAL_SIGNATURE,
            validity=LEAF_VALIDITY,
        )


def test_largest_serial_is_accepted_by_pyca(pki: Pki) -> None:
    tbs = profiles.end_entity_tbs(
        serial_number=(1 << 159) - 1,
        issuer=pki.issuing["P-256"],
        system_title=METER_ST,
        public_key=public_key_info(pki.meter_keys["P-256"]),
        certificate_type=CertificateType.DIGITAL_SIGNATURE,
        validity=LEAF_VALIDITY,
    )
    leaf = ca.sign_certificate(tbs, PycaSigner(pki.issuing_keys["P-256"]))
    assert to_pyca(leaf).serial_number == (1 << 159) - 1


def test_root_is_self_issued_with_its_own_key_identifier(pki: Pki) -> None:
    root = to_pyca(pki.root)
    assert root.issuer == root.subject
    assert root.subject.rfc4514_string() == "CN=KMS Test Root CA,O=Example Utility"
    ski = root.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier).value
    aki = root.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    constraints = root.extensions.get_extension_for_class(cx509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length is None
    usage = root.extensions.get_extension_for_class(cx509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    root.verify_directly_issued_by(root)


def test_issuing_ca_has_path_length_0(pki: Pki) -> None:
    issuing = to_pyca(pki.issuing["P-256"])
    constraints = issuing.extensions.get_extension_for_class(cx509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    aki = issuing.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == pki.root.key_identifier


def test_x509_time_encoding_switches_at_2050(pki: Pki) -> None:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050."""
    root_validity = pki.root["tbs_certificate"]["validity"]
    assert root_validity["not_before"].name == "utc_time"
    assert root_validity["not_after"].name == "general_time"  # 2060
    assert to_pyca(pki.root).not_valid_after_utc == datetime(2060, 1, 1, tzinfo=UTC)
    leaf_validity = pki.leaf("P-256")["tbs_certificate"]["validity"]
    assert {leaf_validity[f].name for f in ("not_before", "not_after")} == {"utc_time"}


def test_ca_tbs_caller_bugs(pki: Pki) -> None:
    key = public_key_info(private_key("P-256", 31))
    common = {
        "serial_number": serial("ca"),
        "subject": profiles.ca_name("Sub CA"),
        "validity": ROOT_VALIDITY,
    }
    with pytest.raises(
        ValueError, match="issuer_curve 'P-384' is not the signing key's curve P-256"
    ):
        profiles.ca_tbs(
            public_key=key, issuer=None, issuer_curve="P-384", path_length=None, **common
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path_length must be None or a non-negative int"):
        profiles.ca_tbs(public_key=key, issuer=None, issuer_curve="P-256", path_length=-1, **common)  # type: ignore[arg-type]
    with pytest.raises(CertificateProfileError, match="pathLenConstraint 0 allows no subordinate"):
        profiles.ca_tbs(
            public_key=key,
            issuer=pki.issuing["P-384"],
            issuer_curve="P-384",
            path_length=None,
            **common,  # type: ignore[arg-type]
        )


def test_certificate_type_and_entity_derivation(pki: Pki) -> None:
    for certificate_type in CertificateType:
        leaf = pki.leaf("P-256", certificate_type)
        assert profiles.certificate_type_of(leaf) is certificate_type
        assert profiles.entity_of(leaf, METER_ST) is CertificateEntity.SERVER
        assert profiles.entity_of(leaf, OTHER_ST) is CertificateEntity.CLIENT
        assert profiles.entity_of(leaf) is CertificateEntity.CLIENT
    assert profiles.certificate_type_of(pki.root) is None
    assert profiles.entity_of(pki.root, METER_ST) is CertificateEntity.CERTIFICATION_AUTHORITY
    assert profiles.entity_of(pki.issuing["P-256"]) is CertificateEntity.CERTIFICATION_AUTHORITY


def test_validity_is_carried_exactly(pki: Pki) -> None:
    validity = Validity(
        datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC), datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    )
    leaf = to_pyca(pki.leaf("P-256", validity=validity, label="exact"))
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (
        validity.not_before,
        validity.not_after,
    )


def test_gurux_python_cannot_read_a_critical_key_usage(pki: Pki) -> None:
    """Why gurux-dlms is no oracle for certificates: 1.0.203's ``GXx509Certificate`` indexes the
    critical flag instead of the value when keyUsage is critical, which the profile requires.
    If this starts failing, Gurux fixed it and should be added as an oracle here."""
    from gurux_dlms.asn.GXx509Certificate import GXx509Certificate

    with pytest.raises(TypeError, match="'bool' object is not subscriptable"):
        GXx509Certificate(pki.leaf("P-256").dump())


def test_tbs_is_an_asn1crypto_structure(pki: Pki) -> None:
    tbs = profiles.ca_tbs(
        serial_number=serial("t"),
        subject=profiles.ca_name("T"),
        public_key=public_key_info(private_key("P-256", 32)),
        issuer=None,
        issuer_curve="P-256",
        validity=ROOT_VALIDITY,
        path_length=1,
    )
    assert isinstance(tbs, x509.TbsCertificate)
    assert tbs["version"].native == "v3"
    constraints = [e for e in tbs["extensions"] if e["extn_id"].native == "basic_constraints"]
    assert constraints[0]["extn_value"].parsed.native == {"ca": True, "path_len_constraint": 1}
