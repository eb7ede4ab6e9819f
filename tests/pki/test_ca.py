"""kms.pki.ca: signing TBSCertificates; pyca and OpenSSL accept both suite chains."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509 as cx509

from kms.pki import ca, encoding, profiles
from kms.pki.profiles import CertificateType
from tests.pki.support import (
    ISSUING_VALIDITY,
    LEAF_VALIDITY,
    METER_ST,
    ROOT_VALIDITY,
    Pki,
    PycaSigner,
    openssl_verify,
    private_key,
    public_key_info,
    serial,
    to_pyca,
)


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
@pytest.mark.parametrize("certificate_type", list(CertificateType))
def test_openssl_verifies_the_chain(
    pki: Pki, tmp_path: Path, curve: str, certificate_type: CertificateType
) -> None:
    """root P-384 -> issuing P-256 (suite 1) or P-384 (suite 2) -> meter."""
    leaf = pki.leaf(curve, certificate_type)
    result = openssl_verify(
        tmp_path,
        root=encoding.certificate_pem(pki.root),
        untrusted=encoding.certificate_pem(pki.issuing[curve]),
        leaf=encoding.certificate_pem(leaf),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("leaf.pem: OK")


def test_openssl_refuses_a_leaf_under_the_other_issuing_ca(pki: Pki, tmp_path: Path) -> None:
    """The interop check above can fail: the suite 2 CA cannot vouch for a suite 1 leaf."""
    result = openssl_verify(
        tmp_path,
        root=encoding.certificate_pem(pki.root),
        untrusted=encoding.certificate_pem(pki.issuing["P-384"]),
        leaf=encoding.certificate_pem(pki.leaf("P-256")),
    )
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_pyca_verifies_every_link(pki: Pki, curve: str) -> None:
    root = to_pyca(pki.root)
    issuing = to_pyca(pki.issuing[curve])
    root.verify_directly_issued_by(root)
    issuing.verify_directly_issued_by(root)
    to_pyca(pki.leaf(curve)).verify_directly_issued_by(issuing)


def test_sign_certificate_refuses_an_algorithm_the_signer_does_not_use(pki: Pki) -> None:
    tbs = profiles.end_entity_tbs(
        serial_number=serial("mismatch"),
        issuer=pki.issuing["P-256"],
        system_title=METER_ST,
        public_key=public_key_info(pki.meter_keys["P-256"]),
        certificate_type=CertificateType.DIGITAL_SIGNATURE,
        validity=LEAF_VALIDITY,
    )
    with pytest.raises(ValueError, match="names ecdsa-with-SHA256 but the signer's P-384 key"):
        ca.sign_certificate(tbs, PycaSigner(pki.issuing_keys["P-384"]))


def test_sign_certificate_signs_the_exact_tbs_der(pki: Pki) -> None:
    tbs = profiles.end_entity_tbs(
        serial_number=serial("exact"),
        issuer=pki.issuing["P-256"],
        system_title=METER_ST,
        public_key=public_key_info(pki.meter_keys["P-256"]),
        certificate_type=CertificateType.KEY_AGREEMENT,
        validity=LEAF_VALIDITY,
    )
    certificate = ca.sign_certificate(tbs, PycaSigner(pki.issuing_keys["P-256"]))
    assert certificate["tbs_certificate"].dump() == tbs.dump()
    assert to_pyca(certificate).tbs_certificate_bytes == tbs.dump()


def test_root_signer_must_hold_the_root_key() -> None:
    with pytest.raises(ValueError, match="the signer's key is not the CA key"):
        ca.self_signed_root(
            serial_number=serial("wrong-root"),
            subject=profiles.ca_name("Root"),
            public_key=public_key_info(private_key("P-256", 51)),
            signer=PycaSigner(private_key("P-256", 52)),
            validity=ROOT_VALIDITY,
        )


def test_issuing_ca_signer_must_hold_the_issuer_key(pki: Pki) -> None:
    with pytest.raises(ValueError, match="the signer's key is not the CA key"):
        ca.issuing_ca(
            serial_number=serial("wrong-issuer"),
            subject=profiles.ca_name("Issuing"),
            public_key=public_key_info(private_key("P-256", 53)),
            issuer=pki.root,
            signer=PycaSigner(private_key("P-384", 54)),
            validity=ISSUING_VALIDITY,
        )


def test_p256_root_can_issue_suite_1_only() -> None:
    key = private_key("P-256", 55)
    root = ca.self_signed_root(
        serial_number=serial("p256-root"),
        subject=profiles.ca_name("P-256 Root"),
        public_key=public_key_info(key),
        signer=PycaSigner(key),
        validity=ROOT_VALIDITY,
    )
    assert to_pyca(root).signature_hash_algorithm is not None
    assert to_pyca(root).signature_hash_algorithm.name == "sha256"
    issuing = ca.issuing_ca(
        serial_number=serial("p256-issuing"),
        subject=profiles.ca_name("P-256 Issuing"),
        public_key=public_key_info(private_key("P-256", 56)),
        issuer=root,
        signer=PycaSigner(key),
        validity=ISSUING_VALIDITY,
    )
    profiles.check_certificate(issuing, issuer=root)
    from kms.errors import CertificateProfileError

    with pytest.raises(CertificateProfileError, match="must be signed by a P-384 CA"):
        ca.issuing_ca(
            serial_number=serial("p384-under-p256"),
            subject=profiles.ca_name("P-384 Issuing"),
            public_key=public_key_info(private_key("P-384", 57)),
            issuer=root,
            signer=PycaSigner(key),
            validity=ISSUING_VALIDITY,
        )


def test_certificates_survive_a_pem_round_trip(pki: Pki) -> None:
    leaf = pki.leaf("P-384", CertificateType.TLS)
    pem = encoding.certificate_pem(leaf)
    assert cx509.load_pem_x509_certificate(pem) == to_pyca(leaf)
    assert encoding.load_certificate(pem).dump() == leaf.dump()
