"""kms.pki.profile_check: every Green Book profile rule, broken one at a time.

Bad certificates are made with pyca's ``CertificateBuilder`` (tests/pki/support.py) from a
baseline that passes, so each case fails for the one thing it changes; shapes pyca will not build
(v1, negative serials, time encodings, duplicate extensions) are edited asn1crypto structures
re-signed with pyca.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from asn1crypto import core, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from kms.errors import CertificateProfileError, InvalidSignature
from kms.pki.profiles import CertificateType, check_certificate
from tests.pki.support import (
    METER_ST,
    OTHER_ST,
    TLS_EKU,
    Pki,
    editable_tbs,
    private_key,
    pyca_builder,
    pyca_sign,
    resign,
)

Case = Callable[[Pki], tuple[x509.Certificate, dict[str, object]]]


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_what_the_kms_issues_passes(pki: Pki, curve: str) -> None:
    check_certificate(pki.root)
    check_certificate(pki.root, issuer=pki.root, is_ca=True)
    check_certificate(pki.issuing[curve], issuer=pki.root, is_ca=True)
    for certificate_type in CertificateType:
        leaf = pki.leaf(curve, certificate_type)
        check_certificate(leaf)
        check_certificate(
            leaf,
            issuer=pki.issuing[curve],
            certificate_type=certificate_type,
            system_title=METER_ST,
            is_ca=False,
        )


def _base(pki: Pki, **changes: object) -> cx509.CertificateBuilder:
    arguments: dict[str, object] = {
        "issuer": pki.issuing["P-256"],
        "subject_key": pki.meter_keys["P-256"],
    }
    arguments.update(changes)
    return pyca_builder(**arguments)  # type: ignore[arg-type]


def _sign(pki: Pki, builder: cx509.CertificateBuilder, **kw: object) -> x509.Certificate:
    return pyca_sign(builder, pki.issuing_keys["P-256"], **kw)  # type: ignore[arg-type]


def test_unknown_non_critical_extension_is_tolerated(pki: Pki) -> None:
    odd = cx509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.4"), b"\x30\x05")
    check_certificate(_sign(pki, _base(pki).add_extension(odd, critical=False)))


def test_the_pyca_baseline_passes(pki: Pki) -> None:
    """Each case below changes one thing of this certificate; it must pass as built."""
    check_certificate(
        _sign(pki, _base(pki)),
        issuer=pki.issuing["P-256"],
        certificate_type=CertificateType.DIGITAL_SIGNATURE,
        system_title=METER_ST,
    )
    tls = _base(pki, key_usage=("digital_signature", "key_agreement")).add_extension(
        TLS_EKU, critical=False
    )
    check_certificate(_sign(pki, tls), issuer=pki.issuing["P-256"])


def _edited(pki: Pki, edit: Callable[[x509.TbsCertificate], None]) -> x509.Certificate:
    tbs = editable_tbs(pki.leaf("P-256"))
    edit(tbs)
    return resign(tbs, pki.issuing_keys["P-256"])


def _set(field: str, value: object) -> Callable[[x509.TbsCertificate], None]:
    def edit(tbs: x509.TbsCertificate) -> None:
        tbs[field] = value

    return edit


def _validity(not_before: object, not_after: object) -> Callable[[x509.TbsCertificate], None]:
    return _set("validity", x509.Validity({"not_before": not_before, "not_after": not_after}))


def _duplicate_key_usage(tbs: x509.TbsCertificate) -> None:
    extensions = list(tbs["extensions"])
    usage = next(e for e in extensions if e["extn_id"].native == "key_usage")
    tbs["extensions"] = [*extensions, x509.Extension.load(usage.dump())]


def _critical_ski(tbs: x509.TbsCertificate) -> None:
    rebuilt = []
    for extension in tbs["extensions"]:
        copy = x509.Extension.load(extension.dump())
        if copy["extn_id"].native == "key_identifier":
            copy["critical"] = True
        rebuilt.append(copy)
    tbs["extensions"] = rebuilt


T2030 = datetime(2030, 1, 1, tzinfo=UTC)
T2031 = datetime(2031, 1, 1, tzinfo=UTC)
OTHER_CA = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Some Other CA")])

# (id, certificate factory, check_certificate keywords, expected message)
CASES: list[tuple[str, Callable[[Pki], x509.Certificate], dict[str, object], str]] = [
    ("v1", lambda p: _edited(p, _set("version", "v1")), {}, "certificate is X.509 v1, not v3"),
    (
        "sha512",
        lambda p: _sign(p, _base(p), hash_algorithm=hashes.SHA512()),
        {},
        "signature algorithm sha512_ecdsa is not ecdsa-with-SHA256 or ecdsa-with-SHA384",
    ),
    (
        "hash-not-of-issuer-curve",
        lambda p: _sign(p, _base(p), hash_algorithm=hashes.SHA384()),
        {"issuer": "issuing-P-256"},
        "signature algorithm ecdsa-with-SHA384 does not follow the issuer's P-256 key",
    ),
    (
        "inner-outer-differ",
        lambda p: resign(
            _edited(p, _set("signature", {"algorithm": "sha384_ecdsa"}))["tbs_certificate"],
            p.issuing_keys["P-256"],
            "sha256_ecdsa",
        ),
        {},
        "tbsCertificate signature differs from signatureAlgorithm",
    ),
    (
        "rsa-subject",
        lambda p: _sign(p, _base(p, subject_key=rsa.generate_private_key(65537, 2048))),
        {},
        "public key algorithm is rsa, not id-ecPublicKey",
    ),
    (
        "p521-subject",
        lambda p: _sign(p, _base(p, subject_key=ec.generate_private_key(ec.SECP521R1()))),
        {},
        "public key curve secp521r1 is not P-256 or P-384",
    ),
    (
        "p384-under-p256",
        lambda p: _sign(p, _base(p, subject_key=p.meter_keys["P-384"])),
        {"issuer": "issuing-P-256"},
        "a P-384 certificate must be signed by a P-384 CA",
    ),
    (
        "p384-under-sha256-no-issuer",
        lambda p: _sign(p, _base(p, subject_key=p.meter_keys["P-384"])),
        {},
        "a P-384 certificate must be signed by a P-384 CA",
    ),
    ("serial-negative", lambda p: _edited(p, _set("serial_number", -(2**70))), {}, "not positive"),
    (
        "serial-21-octets",
        lambda p: _edited(p, _set("serial_number", 1 << 160)),
        {},
        "serial number has 21 octets, more than 20",
    ),
    (
        "serial-short",
        lambda p: _sign(p, _base(p, serial_number=2**40)),
        {},
        "serial number is shorter than 64 bits",
    ),
    (
        "validity-reversed",
        lambda p: _edited(p, _validity({"utc_time": T2031}, {"utc_time": T2030})),
        {},
        "validity notAfter is not after notBefore",
    ),
    (
        "generalized-before-2050",
        lambda p: _edited(p, _validity({"general_time": T2030}, {"utc_time": T2031})),
        {},
        "notBefore in 2030 must be UTCTime",
    ),
    (
        "duplicate-extension",
        lambda p: _edited(p, _duplicate_key_usage),
        {},
        "extension keyUsage appears twice",
    ),
    (
        "critical-ski",
        lambda p: _edited(p, _critical_ski),
        {},
        "critical extension subjectKeyIdentifier is not allowed by the profile",
    ),
    (
        "unknown-critical",
        lambda p: _sign(
            p,
            _base(p).add_extension(
                cx509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
                critical=True,
            ),
        ),
        {},
        "critical extension 1.3.6.1.4.1.99999.1 is not allowed",
    ),
    ("no-key-usage", lambda p: _sign(p, _base(p, key_usage=())), {}, "keyUsage is missing"),
    (
        "key-usage-not-critical",
        lambda p: _sign(p, _base(p, key_usage_critical=False)),
        {},
        "keyUsage is not critical",
    ),
    (
        "key-usage-not-the-type",
        lambda p: _sign(p, _base(p, key_usage=("key_agreement",))),
        {"certificate_type": CertificateType.DIGITAL_SIGNATURE},
        r"keyUsage \{keyAgreement\} is not the signing set \{digitalSignature\}",
    ),
    (
        "key-usage-tls-asked-for-key-agreement",
        lambda p: _sign(
            p,
            _base(p, key_usage=("digital_signature", "key_agreement")).add_extension(
                TLS_EKU, critical=False
            ),
        ),
        {"certificate_type": CertificateType.KEY_AGREEMENT},
        "is not the key-agreement set",
    ),
    (
        "key-usage-no-type",
        lambda p: _sign(p, _base(p, key_usage=("digital_signature", "key_encipherment"))),
        {},
        r"keyUsage \{digitalSignature, key_encipherment\} matches no certificate type",
    ),
    (
        "key-cert-sign-on-end-entity",
        lambda p: _sign(p, _base(p, key_usage=("key_cert_sign",))),
        {},
        r"keyUsage \{keyCertSign\} matches no certificate type",
    ),
    (
        "eku-on-signing",
        lambda p: _sign(p, _base(p).add_extension(TLS_EKU, critical=False)),
        {},
        "extendedKeyUsage is only allowed on TLS certificates",
    ),
    (
        "tls-without-eku",
        lambda p: _sign(p, _base(p, key_usage=("digital_signature", "key_agreement"))),
        {},
        "extendedKeyUsage is missing",
    ),
    (
        "tls-eku-code-signing",
        lambda p: _sign(
            p,
            _base(p, key_usage=("digital_signature", "key_agreement")).add_extension(
                cx509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
                ),
                critical=False,
            ),
        ),
        {},
        "allows more than serverAuth, clientAuth",
    ),
    (
        "no-ski",
        lambda p: _sign(
            p,
            _base(p, with_key_identifiers=False).add_extension(
                cx509.AuthorityKeyIdentifier(p.issuing["P-256"].key_identifier, None, None),
                critical=False,
            ),
        ),
        {},
        "subjectKeyIdentifier is missing",
    ),
    (
        "no-aki",
        lambda p: _sign(
            p,
            _base(p, with_key_identifiers=False).add_extension(
                cx509.SubjectKeyIdentifier.from_public_key(p.meter_keys["P-256"].public_key()),
                critical=False,
            ),
        ),
        {},
        "authorityKeyIdentifier is missing",
    ),
    (
        "aki-without-key-identifier",
        lambda p: _sign(
            p,
            _base(p, with_key_identifiers=False)
            .add_extension(
                cx509.SubjectKeyIdentifier.from_public_key(p.meter_keys["P-256"].public_key()),
                critical=False,
            )
            .add_extension(
                cx509.AuthorityKeyIdentifier(None, [cx509.DirectoryName(OTHER_CA)], 7),
                critical=False,
            ),
        ),
        {},
        "authorityKeyIdentifier has no keyIdentifier",
    ),
    (
        "aki-not-the-issuer-ski",
        lambda p: _sign(p, _base(p, authority_key_identifier=p.root.key_identifier)),
        {"issuer": "issuing-P-256"},
        "authorityKeyIdentifier is not the issuer's subjectKeyIdentifier",
    ),
    (
        "issuer-name-not-the-issuer-subject",
        lambda p: _sign(p, _base(p, issuer_name=OTHER_CA)),
        {"issuer": "issuing-P-256"},
        "issuer name CN=Some Other CA is not the issuer certificate's subject "
        "O=Example Utility,CN=KMS Test Issuing CA P-256",
    ),
    (
        "ca-true-on-end-entity",
        lambda p: _sign(
            p, _base(p).add_extension(cx509.BasicConstraints(ca=True, path_length=None), True)
        ),
        {"certificate_type": CertificateType.DIGITAL_SIGNATURE},
        "end-entity certificate has basicConstraints cA=TRUE",
    ),
    (
        "cn-lower-case",
        lambda p: _sign(p, _base(p, common_name=METER_ST.hex())),
        {},
        "subject CN '4d4d4d0000bc614e' is not a system title \\(16 upper-case hex characters\\)",
    ),
    (
        "cn-not-16",
        lambda p: _sign(p, _base(p, common_name="4D4D4D0000BC614E00")),
        {},
        "subject CN '4D4D4D0000BC614E00' is not a system title",
    ),
    (
        "cn-not-the-meter",
        lambda p: _sign(p, _base(p)),
        {"system_title": OTHER_ST},
        "subject CN 4D4D4D0000BC614E is not the system title 4D4D4D0000000001",
    ),
    (
        "ca-without-basic-constraints",
        lambda p: _sign(p, _base(p, common_name="Sub CA", key_usage=("key_cert_sign",))),
        {"is_ca": True},
        "basicConstraints cA=TRUE is missing on a CA certificate",
    ),
    (
        "ca-basic-constraints-not-critical",
        lambda p: _sign(
            p,
            _base(p, common_name="Sub CA", key_usage=("key_cert_sign", "crl_sign")).add_extension(
                cx509.BasicConstraints(ca=True, path_length=0), critical=False
            ),
        ),
        {},
        "basicConstraints is not critical on a CA certificate",
    ),
    (
        "ca-without-key-cert-sign",
        lambda p: _sign(
            p,
            _base(p, common_name="Sub CA", key_usage=("crl_sign",)).add_extension(
                cx509.BasicConstraints(ca=True, path_length=0), critical=True
            ),
        ),
        {},
        r"CA keyUsage \{cRLSign\} lacks keyCertSign",
    ),
    (
        "ca-with-key-agreement",
        lambda p: _sign(
            p,
            _base(
                p, common_name="Sub CA", key_usage=("key_cert_sign", "key_agreement")
            ).add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True),
        ),
        {},
        "has more than keyCertSign, cRLSign",
    ),
]


def _keywords(pki: Pki, keywords: dict[str, object]) -> dict[str, object]:
    resolved = dict(keywords)
    if resolved.get("issuer") == "issuing-P-256":
        resolved["issuer"] = pki.issuing["P-256"]
    return resolved


@pytest.mark.parametrize(
    ("make", "keywords", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_rule(
    pki: Pki,
    make: Callable[[Pki], x509.Certificate],
    keywords: dict[str, object],
    message: str,
) -> None:
    certificate = make(pki)
    with pytest.raises(CertificateProfileError, match=message):
        check_certificate(certificate, **_keywords(pki, keywords))  # type: ignore[arg-type]


def test_signature_algorithm_parameters_must_be_absent(pki: Pki) -> None:
    leaf = pki.leaf("P-256")
    with_null = {"algorithm": "sha256_ecdsa", "parameters": core.Null()}
    tbs = editable_tbs(leaf)
    tbs["signature"] = with_null
    edited = resign(tbs, pki.issuing_keys["P-256"])
    certificate = x509.Certificate(
        {
            "tbs_certificate": edited["tbs_certificate"],
            "signature_algorithm": with_null,
            "signature_value": edited["signature_value"],
        }
    )
    with pytest.raises(CertificateProfileError, match="parameters are present"):
        check_certificate(x509.Certificate.load(certificate.dump(force=True)))


def test_issuer_without_a_key_identifier(pki: Pki) -> None:
    key = private_key("P-256", 41)
    ca_builder = _base(
        pki,
        common_name="No SKI CA",
        key_usage=("key_cert_sign",),
        subject_key=key,
        with_key_identifiers=False,
    ).add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True)
    no_ski_ca = _sign(pki, ca_builder)
    leaf_builder = pyca_builder(
        issuer=pki.issuing["P-256"],
        subject_key=pki.meter_keys["P-256"],
        issuer_name=cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "No SKI CA")]),
        authority_key_identifier=b"\x01" * 20,
    )
    leaf = pyca_sign(leaf_builder, key)
    with pytest.raises(CertificateProfileError, match="issuer certificate has no subjectKey"):
        check_certificate(leaf, issuer=no_ski_ca)


def test_a_bad_signature_is_invalid_signature(pki: Pki) -> None:
    intruder = private_key("P-256", 42)  # same names and key identifiers, wrong key
    forged = pyca_sign(_base(pki), intruder)
    check_certificate(forged)  # the profile alone cannot tell
    with pytest.raises(InvalidSignature, match="does not verify with the issuer's key"):
        check_certificate(forged, issuer=pki.issuing["P-256"])


def test_a_tampered_root_fails_its_own_signature(pki: Pki) -> None:
    tbs = editable_tbs(pki.root)
    tbs["serial_number"] = tbs["serial_number"].native + 1
    tampered = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": pki.root["signature_algorithm"],
            "signature_value": pki.root["signature_value"],
        }
    )
    with pytest.raises(InvalidSignature):
        check_certificate(x509.Certificate.load(tampered.dump(force=True)))


def test_contradictory_arguments_are_a_caller_bug(pki: Pki) -> None:
    with pytest.raises(ValueError, match="a CA certificate has no certificate_type"):
        check_certificate(pki.root, is_ca=True, certificate_type=CertificateType.DIGITAL_SIGNATURE)


def test_a_ca_checked_as_an_end_entity_fails(pki: Pki) -> None:
    with pytest.raises(CertificateProfileError, match="matches no certificate type"):
        check_certificate(pki.issuing["P-256"], is_ca=False)
    with pytest.raises(CertificateProfileError, match="is not the signing set"):
        check_certificate(pki.root, certificate_type=CertificateType.DIGITAL_SIGNATURE)


def test_an_end_entity_checked_as_a_ca_fails(pki: Pki) -> None:
    with pytest.raises(CertificateProfileError, match="lacks keyCertSign"):
        check_certificate(pki.leaf("P-256"), is_ca=True)
