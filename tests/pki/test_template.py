"""kms.pki.template: a filled template is byte for byte what asn1crypto builds (profiles.
end_entity_tbs, ca.sign_certificate), over random serials, system titles, keys and signatures;
whatever does not fit a slot is refused rather than encoded differently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.pki import ca, ecdsa, profiles
from kms.pki.profiles import CertificateType, Validity
from kms.pki.template import EndEntityTemplate, certificate_der
from tests.pki.support import (
    LEAF_VALIDITY,
    METER_ST,
    Pki,
    PycaSigner,
    private_key,
    public_key_info,
    to_pyca,
)

_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
_ORDER = {
    "P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P-384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}
#: (issuing CA's curve, subject key's curve): a P-384 key never sits under a P-256 CA.
_PAIRS = [("P-256", "P-256"), ("P-384", "P-384"), ("P-384", "P-256")]


def _key(curve: str, scalar: int, compressed: bool) -> keys.PublicKeyInfo:
    public = ec.derive_private_key(scalar, _CURVES[curve]).public_key()
    if not compressed:
        return public_key_info(public)
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    named = {"P-256": "secp256r1", "P-384": "secp384r1"}[curve]
    return keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "ec", "parameters": ("named", named)}, "public_key": point}
    )


@dataclass(frozen=True)
class Values:
    serial: int
    system_title: bytes
    public_key: keys.PublicKeyInfo


def _values(data: st.DataObject, curve: str, compressed: bool) -> Values:
    random = data.draw(st.binary(min_size=16, max_size=16))
    scalar = data.draw(st.integers(min_value=1, max_value=_ORDER[curve] - 1))
    return Values(
        profiles.serial_number_from(random),
        data.draw(st.binary(min_size=8, max_size=8)),
        _key(curve, scalar, compressed),
    )


def _built(pki: Pki, issuer_curve: str, kind: CertificateType, validity: Validity, v: Values):
    return profiles.end_entity_tbs(
        serial_number=v.serial,
        issuer=pki.issuing[issuer_curve],
        system_title=v.system_title,
        public_key=v.public_key,
        certificate_type=kind,
        validity=validity,
    )


def _template(tbs: x509.TbsCertificate, v: Values) -> EndEntityTemplate:
    return EndEntityTemplate.from_tbs(
        tbs.dump(),
        serial_number=v.serial,
        system_title=v.system_title,
        public_key_der=v.public_key.dump(),
    )


_START = datetime(2020, 1, 1, tzinfo=UTC)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    pair=st.sampled_from(_PAIRS),
    kind=st.sampled_from(list(CertificateType)),
    compressed=st.booleans(),
    start_days=st.integers(min_value=0, max_value=365 * 40),
    length_days=st.integers(min_value=1, max_value=365 * 40),
)
def test_a_filled_template_is_what_asn1crypto_builds(
    pki: Pki,
    data: st.DataObject,
    pair: tuple[str, str],
    kind: CertificateType,
    compressed: bool,
    start_days: int,
    length_days: int,
) -> None:
    """The group's first TBS makes the template; any other serial, title and key of the group
    fill it into exactly the DER profiles.end_entity_tbs makes (UTCTime and GeneralizedTime
    validities, uncompressed and compressed points, every type, both CAs)."""
    issuer_curve, curve = pair
    start = _START + timedelta(days=start_days)
    validity = Validity(start, start + timedelta(days=length_days, seconds=1))
    first = _values(data, curve, compressed)
    template = _template(_built(pki, issuer_curve, kind, validity, first), first)
    other = _values(data, curve, compressed)
    expected = _built(pki, issuer_curve, kind, validity, other).dump()
    key_der = other.public_key.dump()
    assert template.fits(other.serial, key_der)
    assert template.tbs(other.serial, other.system_title, key_der) == expected


@dataclass(frozen=True)
class FixedSigner:
    """A Signer that returns a given raw signature: the encoding is what is under test."""

    curve: str
    raw: bytes

    def sign_digest(self, _digest: bytes) -> bytes:
        return self.raw


def _half(width: int) -> st.SearchStrategy[int]:
    top = 2 ** (8 * width) - 1
    return st.one_of(
        st.integers(min_value=1, max_value=top),
        st.integers(min_value=1, max_value=2**64),  # many leading zero octets
        st.integers(min_value=2 ** (8 * width - 1), max_value=top),  # top bit set: 0x00 pad
        st.sampled_from([1, 0x7F, 0x80, 0xFF, top]),
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), curve=st.sampled_from(["P-256", "P-384"]))
def test_certificate_der_is_what_ca_sign_certificate_makes(
    pki: Pki, data: st.DataObject, curve: str
) -> None:
    """The hand-made Certificate SEQUENCE equals the one ca.sign_certificate has asn1crypto
    build, for any r || s the token may return (short values, top bits set)."""
    width = ecdsa.CURVES[curve][2]
    r, s = data.draw(_half(width)), data.draw(_half(width))
    raw = r.to_bytes(width, "big") + s.to_bytes(width, "big")
    tbs = x509.TbsCertificate.load(pki.leaf(curve)["tbs_certificate"].dump())
    expected = ca.sign_certificate(tbs, FixedSigner(curve, raw)).dump()
    assert certificate_der(tbs.dump(), ecdsa.hash_for_curve(curve), raw) == expected


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_a_filled_certificate_passes_the_profile_check_and_pyca(pki: Pki, curve: str) -> None:
    first = Values(profiles.serial_number_from(bytes(range(16))), METER_ST, _key(curve, 7, False))
    template = _template(_built(pki, curve, CertificateType.TLS, LEAF_VALIDITY, first), first)
    key = private_key(curve, 77)
    title = bytes.fromhex("4B464D1020304050")
    serial = profiles.serial_number_from(bytes([0xFF] * 16))
    tbs = template.tbs(serial, title, public_key_info(key).dump())
    signer = PycaSigner(pki.issuing_keys[curve])
    raw = signer.sign_digest(ecdsa.digest(signer.curve, tbs))
    der = certificate_der(tbs, ecdsa.hash_for_curve(signer.curve), raw)
    certificate = x509.Certificate.load(der, strict=True)
    profiles.check_certificate(
        certificate,
        issuer=pki.issuing[curve],
        certificate_type=CertificateType.TLS,
        system_title=title,
        is_ca=False,
    )
    parsed = cx509.load_der_x509_certificate(der)
    parsed.verify_directly_issued_by(to_pyca(pki.issuing[curve]))
    assert parsed.serial_number == serial
    assert parsed.subject.rfc4514_string() == f"CN={title.hex().upper()}"


def _reference(pki: Pki) -> tuple[EndEntityTemplate, Values]:
    first = Values(profiles.serial_number_from(bytes(16)), METER_ST, _key("P-256", 5, False))
    built = _built(pki, "P-256", CertificateType.DIGITAL_SIGNATURE, LEAF_VALIDITY, first)
    return _template(built, first), first


def test_values_that_do_not_fit_are_refused(pki: Pki) -> None:
    template, first = _reference(pki)
    key_der = first.public_key.dump()
    wrong_curve = bytearray(key_der)
    wrong_curve[len(template.public_key_prefix) - 4] ^= 0x01  # inside the curve's OID
    refused = [
        (2**135, METER_ST, key_der),  # 18 octets: a longer serial
        (2**119, METER_ST, key_der),  # 16 octets
        (-first.serial, METER_ST, key_der),
        (first.serial, METER_ST, _key("P-256", 5, True).dump()),  # compressed: other length
        (first.serial, METER_ST, _key("P-384", 5, False).dump()),
        (first.serial, METER_ST, bytes(wrong_curve)),
    ]
    for serial, title, key in refused:
        assert not template.fits(serial, key)
        with pytest.raises(ValueError, match="does not fit"):
            template.tbs(serial, title, key)
    with pytest.raises(ValueError, match="does not fit"):
        template.tbs(first.serial, METER_ST[:7], key_der)
    assert template.fits(2**134, key_der)  # 17 octets, the top bit clear: fits


def test_from_tbs_refuses_what_it_was_not_made_from(pki: Pki) -> None:
    template, first = _reference(pki)
    built = _built(pki, "P-256", CertificateType.DIGITAL_SIGNATURE, LEAF_VALIDITY, first).dump()
    key_der = first.public_key.dump()
    with pytest.raises(ValueError, match="not made with these values"):
        EndEntityTemplate.from_tbs(
            built, serial_number=first.serial + 1, system_title=METER_ST, public_key_der=key_der
        )
    with pytest.raises(ValueError, match="not made with these values"):
        EndEntityTemplate.from_tbs(
            built, serial_number=first.serial, system_title=bytes(8), public_key_der=key_der
        )
    ca_tbs = pki.issuing["P-256"]["tbs_certificate"].dump()  # subject O + CN: not a meter's
    with pytest.raises(ValueError, match="subject"):
        EndEntityTemplate.from_tbs(
            ca_tbs, serial_number=first.serial, system_title=METER_ST, public_key_der=key_der
        )
    for broken in (built[:-1], built + b"\x00", b"\x04\x00", b""):
        with pytest.raises(ValueError, match="template"):
            EndEntityTemplate.from_tbs(
                broken, serial_number=first.serial, system_title=METER_ST, public_key_der=key_der
            )
    assert template.tbs(first.serial, METER_ST, key_der) == built


def test_certificate_der_refuses_an_unknown_hash() -> None:
    with pytest.raises(ValueError, match="sha512"):
        certificate_der(b"\x30\x00", "sha512", bytes(64))
