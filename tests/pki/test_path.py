"""kms.pki.path: path building by name and key identifier, and each reason a path fails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from kms.errors import InvalidCertificatePath
from kms.pki import ca, profiles
from kms.pki.crl import RevokedCertificate, crl_tbs, revocation_check, sign_crl
from kms.pki.path import validate_path
from kms.pki.profiles import Validity
from tests.pki.support import (
    AT,
    METER_ST,
    OTHER_ST,
    Pki,
    PycaSigner,
    days,
    editable_tbs,
    private_key,
    public_key_info,
    pyca_builder,
    pyca_sign,
    resign,
    serial,
    to_pyca,
)

LEAF_CN = f"CN={METER_ST.hex().upper()}"
ISSUING_256 = "O=Example Utility,CN=KMS Test Issuing CA P-256"


def _dumps(path: list[x509.Certificate]) -> list[bytes]:
    return [c.dump() for c in path]


def _name(common_name: str) -> cx509.Name:
    return cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pyca_ca(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    name: cx509.Name,
    path_length: int | None = 0,
    **changes: object,
) -> x509.Certificate:
    builder = pyca_builder(
        issuer=issuer,
        subject_key=key,
        subject_name=name,
        key_usage=("key_cert_sign", "crl_sign"),
        serial_number=serial(f"{name.rfc4514_string()} by {issuer.subject.human_friendly}"),
        **changes,  # type: ignore[arg-type]
    ).add_extension(cx509.BasicConstraints(ca=True, path_length=path_length), critical=True)
    return pyca_sign(builder, issuer_key)


def _pyca_leaf(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, **changes: object
) -> x509.Certificate:
    arguments: dict[str, object] = {"issuer": issuer, "subject_key": private_key("P-256", 90)}
    arguments.update(changes)
    return pyca_sign(pyca_builder(**arguments), issuer_key)  # type: ignore[arg-type]


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_valid_paths(pki: Pki, curve: str) -> None:
    leaf = pki.leaf(curve)
    intermediates = [pki.issuing["P-256"], pki.issuing["P-384"], pki.leaf("P-256", label="noise")]
    path = validate_path(leaf, intermediates, pki.root, at=AT)
    assert _dumps(path) == _dumps([leaf, pki.issuing[curve], pki.root])
    issuing_path = validate_path(pki.issuing[curve], [], pki.root, at=AT)
    assert _dumps(issuing_path) == _dumps([pki.issuing[curve], pki.root])
    assert _dumps(validate_path(pki.root, intermediates, pki.root, at=AT)) == [pki.root.dump()]


def test_missing_intermediate(pki: Pki) -> None:
    with pytest.raises(
        InvalidCertificatePath,
        match=f"^certificate {LEAF_CN}: chain does not reach the configured trust anchor$",
    ):
        validate_path(pki.leaf("P-256"), [pki.issuing["P-384"]], pki.root, at=AT)


def test_wrong_anchor(pki: Pki) -> None:
    key = private_key("P-384", 81)
    other = ca.self_signed_root(
        serial_number=serial("other-root"),
        subject=profiles.ca_name("Other Root"),
        public_key=public_key_info(key),
        signer=PycaSigner(key),
        validity=Validity(datetime(2025, 1, 1, tzinfo=UTC), datetime(2045, 1, 1, tzinfo=UTC)),
    )
    with pytest.raises(
        InvalidCertificatePath, match=f"^issuing CA {ISSUING_256}: chain does not reach"
    ):
        validate_path(pki.leaf("P-256"), [pki.issuing["P-256"]], other, at=AT)


def test_impostor_intermediate_is_skipped_or_named(pki: Pki) -> None:
    """Same subject and key identifier as the real issuing CA, another key: building tries
    the signature, so the impostor is passed over, and alone it is named."""
    real = to_pyca(pki.issuing["P-256"])
    impostor = _pyca_ca(
        pki.root,
        pki.root_key,
        private_key("P-256", 82),
        real.subject,
        authority_key_identifier=None,
    )
    # give the impostor the real CA's subjectKeyIdentifier
    tbs = editable_tbs(impostor)
    rebuilt = []
    for extension in tbs["extensions"]:
        copy = x509.Extension.load(extension.dump())
        if copy["extn_id"].native == "key_identifier":
            copy["extn_value"] = pki.issuing["P-256"].key_identifier
        rebuilt.append(copy)
    tbs["extensions"] = rebuilt
    impostor = resign(tbs, pki.root_key)
    assert impostor.key_identifier == pki.issuing["P-256"].key_identifier
    leaf = pki.leaf("P-256")
    path = validate_path(leaf, [impostor, pki.issuing["P-256"]], pki.root, at=AT)
    assert _dumps(path) == _dumps([leaf, pki.issuing["P-256"], pki.root])
    with pytest.raises(
        InvalidCertificatePath,
        match=f"^certificate {LEAF_CN}: signature does not verify with the key of {ISSUING_256}$",
    ):
        validate_path(leaf, [impostor], pki.root, at=AT)


def test_tampered_link_to_the_anchor(pki: Pki) -> None:
    tbs = editable_tbs(pki.issuing["P-384"])
    tbs["serial_number"] = tbs["serial_number"].native + 1
    tampered = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": pki.issuing["P-384"]["signature_algorithm"],
            "signature_value": pki.issuing["P-384"]["signature_value"],
        }
    )
    tampered = x509.Certificate.load(tampered.dump(force=True))
    with pytest.raises(
        InvalidCertificatePath, match="signature does not verify with the trust anchor's key"
    ):
        validate_path(tampered, [], pki.root, at=AT)


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (
            datetime(2036, 1, 1, 0, 0, 1, tzinfo=UTC),
            f"^certificate {LEAF_CN}: expired at 2036-01-01T00:00:00Z$",
        ),
        (
            datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
            f"^certificate {LEAF_CN}: not valid before 2026-01-01",
        ),
        (
            datetime(2046, 1, 1, tzinfo=UTC),
            f"^issuing CA {ISSUING_256}: expired at 2045-01-01T00:00:00Z$",
        ),
        (
            datetime(2061, 1, 1, tzinfo=UTC),
            "^trust anchor O=Example Utility,CN=KMS Test Root CA: expired at 2060",
        ),
    ],
)
def test_validity_at_the_given_time(pki: Pki, at: datetime, message: str) -> None:
    with pytest.raises(InvalidCertificatePath, match=message):
        validate_path(pki.leaf("P-256"), [pki.issuing["P-256"]], pki.root, at=at)


def test_validity_bounds_are_inclusive(pki: Pki) -> None:
    leaf = pki.leaf("P-256")
    for at in (datetime(2026, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC)):
        validate_path(leaf, [pki.issuing["P-256"]], pki.root, at=at)


def test_an_expired_issuer_is_named_as_such(pki: Pki) -> None:
    short_lived = ca.issuing_ca(
        serial_number=serial("short"),
        subject=profiles.ca_name("Short Lived CA"),
        public_key=public_key_info(pki.issuing_keys["P-256"]),
        issuer=pki.root,
        signer=PycaSigner(pki.root_key),
        validity=Validity(datetime(2025, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)),
    )
    leaf = _pyca_leaf(short_lived, pki.issuing_keys["P-256"])
    with pytest.raises(
        InvalidCertificatePath,
        match=r"^issuing CA CN=Short Lived CA: expired at 2029-01-01T00:00:00Z$",
    ):
        validate_path(leaf, [short_lived], pki.root, at=AT)


def test_revoked_leaf_and_revoked_issuer(pki: Pki) -> None:
    leaf = pki.leaf("P-256")
    certificate_list = sign_crl(
        crl_tbs(
            issuer=pki.issuing["P-256"],
            revoked=[RevokedCertificate(leaf.serial_number, AT - days(1), "key_compromise")],
            this_update=AT - days(1),
            next_update=AT + days(7),
            crl_number=3,
        ),
        PycaSigner(pki.issuing_keys["P-256"]),
    )
    intermediates = [pki.issuing["P-256"]]
    with pytest.raises(InvalidCertificatePath, match=f"^certificate {LEAF_CN}: is revoked$"):
        validate_path(
            leaf, intermediates, pki.root, at=AT, is_revoked=revocation_check([certificate_list])
        )
    other = pki.leaf("P-256", system_title=OTHER_ST)
    validate_path(
        other, intermediates, pki.root, at=AT, is_revoked=revocation_check([certificate_list])
    )

    issuing_serial = pki.issuing["P-256"].serial_number
    with pytest.raises(InvalidCertificatePath, match=f"^issuing CA {ISSUING_256}: is revoked$"):
        validate_path(
            other,
            intermediates,
            pki.root,
            at=AT,
            is_revoked=lambda c: c.serial_number == issuing_serial,
        )
    # the anchor is trusted by configuration, never asked about
    asked: list[int] = []
    validate_path(
        other,
        intermediates,
        pki.root,
        at=AT,
        is_revoked=lambda c: asked.append(c.serial_number) or False,
    )
    assert asked == [issuing_serial, other.serial_number]


def test_an_end_entity_cannot_issue(pki: Pki) -> None:
    meter_key = private_key("P-384", 89)
    meter = _pyca_leaf(pki.root, pki.root_key, subject_key=meter_key)  # directly under the root
    below = _pyca_leaf(meter, meter_key, common_name=OTHER_ST.hex().upper())
    with pytest.raises(
        InvalidCertificatePath,
        match=f"^issuing CA {LEAF_CN}: is not a CA \\(basicConstraints cA=TRUE\\)$",
    ):
        validate_path(below, [meter], pki.root, at=AT)
    # under the issuing CA (pathLenConstraint 0) the same shape fails on the constraint first,
    # as RFC 5280 6.1.4 processes the path from the anchor down
    under_issuing = pki.leaf("P-256")
    below_2 = _pyca_leaf(under_issuing, pki.meter_keys["P-256"], common_name=OTHER_ST.hex().upper())
    with pytest.raises(InvalidCertificatePath, match="pathLenConstraint 0 exceeded"):
        validate_path(below_2, [under_issuing, pki.issuing["P-256"]], pki.root, at=AT)


def test_path_length_constraint(pki: Pki) -> None:
    sub_key = private_key("P-256", 83)
    sub_ca = _pyca_ca(pki.issuing["P-256"], pki.issuing_keys["P-256"], sub_key, _name("Sub CA"))
    leaf = _pyca_leaf(sub_ca, sub_key)
    with pytest.raises(
        InvalidCertificatePath, match=f"^issuing CA {ISSUING_256}: pathLenConstraint 0 exceeded$"
    ):
        validate_path(leaf, [pki.issuing["P-256"], sub_ca], pki.root, at=AT)
    # under a CA with room for one more level the same shape validates
    roomy_key = private_key("P-256", 84)
    roomy = _pyca_ca(pki.root, pki.root_key, roomy_key, _name("Roomy CA"), path_length=1)
    sub_ca_2 = _pyca_ca(roomy, roomy_key, sub_key, _name("Sub CA 2"))
    leaf_2 = _pyca_leaf(sub_ca_2, sub_key)
    assert len(validate_path(leaf_2, [sub_ca_2, roomy], pki.root, at=AT)) == 4


def test_key_cert_sign_is_required_of_issuers(pki: Pki) -> None:
    key = private_key("P-256", 85)
    no_cert_sign = pyca_sign(
        pyca_builder(
            issuer=pki.root,
            subject_key=key,
            subject_name=_name("CRL Only CA"),
            key_usage=("crl_sign",),
        ).add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True),
        pki.root_key,
    )
    leaf = _pyca_leaf(no_cert_sign, key)
    with pytest.raises(
        InvalidCertificatePath, match=r"^issuing CA CN=CRL Only CA: keyUsage lacks keyCertSign$"
    ):
        validate_path(leaf, [no_cert_sign], pki.root, at=AT)


def test_unrecognised_critical_extension(pki: Pki) -> None:
    builder = pyca_builder(
        issuer=pki.issuing["P-256"], subject_key=private_key("P-256", 86)
    ).add_extension(
        cx509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.2"), b"\x05\x00"),
        critical=True,
    )
    leaf = pyca_sign(builder, pki.issuing_keys["P-256"])
    with pytest.raises(
        InvalidCertificatePath,
        match=f"^certificate {LEAF_CN}: unrecognised critical extension 1.3.6.1.4.1.99999.2$",
    ):
        validate_path(leaf, [pki.issuing["P-256"]], pki.root, at=AT)


def test_issuer_loops_end(pki: Pki) -> None:
    """A issued by B and B by A: building stops instead of going round."""
    key_a, key_b = private_key("P-256", 87), private_key("P-256", 88)
    name_a, name_b = _name("Loop A"), _name("Loop B")
    stub_a = _pyca_ca(pki.root, pki.root_key, key_a, name_a)
    stub_b = _pyca_ca(pki.root, pki.root_key, key_b, name_b)
    a_by_b = _pyca_ca(stub_b, key_b, key_a, name_a)
    b_by_a = _pyca_ca(stub_a, key_a, key_b, name_b)
    leaf = _pyca_leaf(stub_a, key_a)
    with pytest.raises(
        InvalidCertificatePath, match=r"^issuing CA CN=Loop B: chain does not reach"
    ):
        validate_path(leaf, [a_by_b, b_by_a], pki.root, at=AT)


def test_time_must_be_aware(pki: Pki) -> None:
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        validate_path(pki.root, [], pki.root, at=datetime(2030, 1, 1))


def test_overlong_chains_are_cut(pki: Pki) -> None:
    keys = [private_key("P-256", 100 + i) for i in range(7)]
    chain: list[x509.Certificate] = []
    issuer, issuer_key = pki.root, pki.root_key
    for i, key in enumerate(keys):
        issuer = _pyca_ca(issuer, issuer_key, key, _name(f"Level {i} CA"), path_length=None)
        issuer_key = key
        chain.append(issuer)
    leaf = _pyca_leaf(issuer, issuer_key)
    with pytest.raises(
        InvalidCertificatePath, match=rf"^certificate {LEAF_CN}: chain is longer than 6"
    ):
        validate_path(leaf, chain, pki.root, at=AT)
    # five certificates below the anchor are still a path
    short_leaf = _pyca_leaf(chain[3], keys[3])
    assert len(validate_path(short_leaf, chain, pki.root, at=AT)) == 6
