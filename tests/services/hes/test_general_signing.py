"""General-signing (0xDF) through the service (issue 5 section 3): the head-end signs in the token
and pyca verifies with the head-end's certificate; a DF signed by pyca with a meter key the KMS
certified verifies, and one tampered with, from an unknown or uncertified meter, or for another
head-end is refused with its own error; APDUs signed by gurux.dlms.java (the vector file) verify
once the KMS has certified their signer's key. Suites 1 and 2.

(gurux-dlms for Python has no general-signing to compare with: tests/dlms/test_general_signing.py
shows it refuses tag 0xDF.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from kms.dlms.general_signing import GeneralSigningApdu, parse_general_signing_apdu, signed_data
from kms.dlms.suites import SecuritySuite
from kms.errors import ConfigError, InputError, InvalidSignature, NotFoundError
from kms.pki.profiles import CertificateType
from kms.services.hes import general_signing
from kms.services.pki import certificates
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import FieldMeter, Kms, Pki, field_meter
from tests.utils import load_nist_vectors, load_vectors_from_file

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
CURVES: dict[int, tuple[ec.EllipticCurve, hashes.SHA256 | hashes.SHA384, int]] = {
    1: (ec.SECP256R1(), hashes.SHA256(), 32),
    2: (ec.SECP384R1(), hashes.SHA384(), 48),
}
# Green Book 8.1's glo-get-request (SC 30), the kind of content a DF carries.
CONTENT = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
GURUX = load_vectors_from_file("dlms/gurux-java/general_signing.txt", load_nist_vectors)
# The RFC 6979 A.2.5 P-256 key that signed the Gurux vectors (the file's header).
GURUX_SIGNER = ec.derive_private_key(
    int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16), ec.SECP256R1()
)


def hes_signing_key(kms: Kms, suite: int) -> ec.EllipticCurvePublicKey:
    """The head-end's signing key made in the token and certified; its public key, by pyca."""
    made = kms.services.end_entities.create(
        actor="pytest", system_title=CLIENT, suite=SecuritySuite(suite),
        certificate_type=CertificateType.DIGITAL_SIGNATURE, purpose="hes-client",
    )  # fmt: skip
    key = x509.load_pem_x509_certificate(str(made["certificate"]).encode()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def certify(kms: Kms, system_title: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    """A signing certificate for the meter's ``key``, issued from its CSR; the serial."""
    hash_ = CURVES[1 if key.curve.key_size == 256 else 2][1]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_title.hex().upper())])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hash_)
    (issued,) = kms.services.certificates.issue(
        actor="pytest",
        items=[certificates.CsrItem(
            csr.public_bytes(serialization.Encoding.DER), "meter.csr",
            CertificateType.DIGITAL_SIGNATURE,
        )],
    )  # fmt: skip
    return issued.serial


def certified_meter(
    kms: Kms, tmp_path: Path, index: int, suite: int
) -> tuple[FieldMeter, ec.EllipticCurvePrivateKey]:
    meter = field_meter(kms, tmp_path, index, suite)
    key = ec.generate_private_key(CURVES[suite][0])
    certify(kms, meter.system_title, key)
    return meter, key


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    suite = 1 if key.curve.key_size == 256 else 2
    _, hash_, size = CURVES[suite]
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def meter_df(
    key: ec.EllipticCurvePrivateKey, originator: bytes, content: bytes = CONTENT, **fields: Any
) -> bytes:
    """A DF from the meter to the head-end, signed by pyca with the meter's key."""
    values: dict[str, Any] = {
        "transaction_id": bytes.fromhex("0102030405060708"),
        "originator_system_title": originator,
        "recipient_system_title": CLIENT,
        "date_time": b"",
        "other_information": b"",
        "content": content,
        "signature": b"",
    }
    values.update(fields)
    template = GeneralSigningApdu(**values)
    return template.with_signature(raw_signature(key, signed_data(template))).to_bytes()


def octet_string(value: bytes) -> bytes:
    assert len(value) < 0x80
    return bytes([len(value)]) + value


# --- the head-end signs ------------------------------------------------------------------------


@pytest.mark.parametrize("suite", [1, 2])
def test_sign_verifies_with_the_head_end_certificate(pki: Pki, tmp_path: Path, suite: int) -> None:
    kms = pki.kms
    _, hash_, size = CURVES[suite]
    meter = field_meter(kms, tmp_path, 10 + suite, suite)
    hes_key = hes_signing_key(kms, suite)

    apdu = kms.services.general_signing.sign(
        recipient_system_title=meter.system_title, content=CONTENT,
        transaction_id=bytes.fromhex("00000000000000AB"), date_time=b"\x07\xea",
        other_information=b"hi",
    )  # fmt: skip
    parsed = parse_general_signing_apdu(apdu)
    assert (parsed.originator_system_title, parsed.recipient_system_title) == (
        CLIENT,
        meter.system_title,
    )
    assert (parsed.content, len(parsed.signature)) == (CONTENT, 2 * size)
    # The signed bytes, written out by hand: every header field with its length, then the
    # content without its own (Gurux's reading, kms.dlms.general_signing).
    expected = (
        octet_string(bytes.fromhex("00000000000000AB"))
        + octet_string(CLIENT)
        + octet_string(meter.system_title)
        + octet_string(b"\x07\xea")
        + octet_string(b"hi")
        + CONTENT
    )
    assert signed_data(parsed) == expected
    assert apdu == b"\xdf" + expected[: -len(CONTENT)] + octet_string(CONTENT) + octet_string(
        parsed.signature
    )
    r = int.from_bytes(parsed.signature[:size], "big")
    s = int.from_bytes(parsed.signature[size:], "big")
    hes_key.verify(encode_dss_signature(r, s), expected, ec.ECDSA(hash_))


def test_sign_draws_a_transaction_id_from_the_token(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    meter = field_meter(kms, tmp_path, 20, 1)
    hes_signing_key(kms, 1)
    ids = set()
    for _ in range(2):
        apdu = kms.services.general_signing.sign(
            recipient_system_title=meter.system_title, content=CONTENT
        )
        ids.add(parse_general_signing_apdu(apdu).transaction_id)
    assert len(ids) == 2
    assert all(len(i) == general_signing.TRANSACTION_ID_LENGTH for i in ids)


def test_sign_refusals(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    suite1 = field_meter(kms, tmp_path, 30, 1)
    suite0 = field_meter(kms, tmp_path, 31, 0)

    def sign(title: bytes, content: bytes = CONTENT, config: Any = kms.config) -> bytes:
        return kms.services_with(config).general_signing.sign(
            recipient_system_title=title, content=content
        )

    with pytest.raises(NotFoundError, match=r"no valid signing key on P-256.*kms entity create"):
        sign(suite1.system_title)
    hes_signing_key(kms, 1)
    with pytest.raises(NotFoundError, match="no meter with system title 4D4D4D00000000FF"):
        sign(bytes.fromhex("4D4D4D00000000FF"))
    with pytest.raises(InputError, match="suite 0 has no public-key operations"):
        sign(suite0.system_title)
    with pytest.raises(InputError, match="content to sign is empty"):
        sign(suite1.system_title, b"")
    with pytest.raises(NotFoundError, match="no valid signing key on P-384"):  # a suite 2 meter
        sign(field_meter(kms, tmp_path, 32, 2).system_title)
    with pytest.raises(ConfigError, match="no client system title"):
        sign(suite1.system_title, config=dataclasses.replace(kms.config, client_system_title=None))
    assert sign(suite1.system_title)[0] == 0xDF


# --- the meter signs ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", [1, 2])
def test_a_meter_signed_df_verifies_and_tampering_is_refused(
    pki: Pki, tmp_path: Path, suite: int
) -> None:
    kms = pki.kms
    meter, key = certified_meter(kms, tmp_path, 40 + suite, suite)
    other, _ = certified_meter(kms, tmp_path, 45 + suite, suite)
    apdu = meter_df(key, meter.system_title)

    verified = kms.services.general_signing.verify(apdu)
    assert verified == parse_general_signing_apdu(apdu)
    assert (verified.content, verified.originator_system_title) == (CONTENT, meter.system_title)

    parsed = parse_general_signing_apdu(apdu)
    flipped = bytearray(parsed.signature)
    flipped[-1] ^= 1
    wrong_length = parsed.signature[:64] if suite == 2 else parsed.signature + bytes(32)
    tampered = {
        "content": dataclasses.replace(parsed, content=CONTENT[:-1] + b"\x00"),
        "transaction_id": dataclasses.replace(parsed, transaction_id=bytes(8)),
        "signature": dataclasses.replace(parsed, signature=bytes(flipped)),
        "signature length": dataclasses.replace(parsed, signature=wrong_length),
        "originator": dataclasses.replace(parsed, originator_system_title=other.system_title),
    }
    for name, bad in tampered.items():
        with pytest.raises(
            InvalidSignature, match=r"^the general-signing APDU's signature did not"
        ):
            kms.services.general_signing.verify(bad.to_bytes())
            pytest.fail(name)


def test_a_df_for_another_recipient(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    meter, key = certified_meter(kms, tmp_path, 50, 1)
    for recipient in (bytes.fromhex("4B4D5300000000A2"), b""):
        apdu = meter_df(key, meter.system_title, recipient_system_title=recipient)
        with pytest.raises(InputError, match="not to this head-end") as info:
            kms.services.general_signing.verify(apdu)
        assert info.value.field == "recipient_system_title"
        verified = kms.services.general_signing.verify(apdu, allow_any_recipient=True)
        assert verified.recipient_system_title == recipient
    # Accepting any recipient still checks the signature, which covers the recipient.
    parsed = parse_general_signing_apdu(meter_df(key, meter.system_title))
    moved = dataclasses.replace(parsed, recipient_system_title=bytes.fromhex("4B4D5300000000A2"))
    with pytest.raises(InvalidSignature):
        kms.services.general_signing.verify(moved.to_bytes(), allow_any_recipient=True)


def test_verify_refusals(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    key = ec.generate_private_key(ec.SECP256R1())
    unknown = bytes.fromhex("4D4D4D00000000FE")
    with pytest.raises(NotFoundError, match="no meter with system title 4D4D4D00000000FE"):
        kms.services.general_signing.verify(meter_df(key, unknown))

    uncertified = field_meter(kms, tmp_path, 60, 1)
    with pytest.raises(NotFoundError, match="has no valid signing certificate on P-256"):
        kms.services.general_signing.verify(meter_df(key, uncertified.system_title))
    # A key-agreement certificate is no signing certificate.
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, uncertified.system_title.hex().upper())]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    kms.services.certificates.issue(
        actor="pytest",
        items=[certificates.CsrItem(
            csr.public_bytes(serialization.Encoding.DER), "ka.csr", CertificateType.KEY_AGREEMENT
        )],
    )  # fmt: skip
    with pytest.raises(NotFoundError, match="has no valid signing certificate"):
        kms.services.general_signing.verify(meter_df(key, uncertified.system_title))

    revoked, revoked_key = certified_meter(kms, tmp_path, 61, 1)
    apdu = meter_df(revoked_key, revoked.system_title)
    assert kms.services.general_signing.verify(apdu).content == CONTENT
    (row,) = kms.services.certificates.list(system_title=revoked.system_title, kind=None)
    kms.services.certificates.revoke(
        actor="pytest", serial=str(row["serial"]), reason="key_compromise"
    )
    with pytest.raises(NotFoundError, match="has no valid signing certificate"):
        kms.services.general_signing.verify(apdu)

    for malformed, field in (
        (b"", "tag"),
        (bytes([0xDD]) + apdu[1:], "tag"),
        (apdu + b"\x00", None),
        (apdu[:-1], "signature"),
    ):
        with pytest.raises(InputError) as info:
            kms.services.general_signing.verify(malformed)
        if field is not None:
            assert info.value.field == field


# --- gurux.dlms.java ---------------------------------------------------------------------------


def test_gurux_java_signed_dfs_verify_through_the_service(pki: Pki, tmp_path: Path) -> None:
    """The vector file's signer key, certified by the KMS for its originator (meter
    4D4D4D0000000001, suite 1); the head-end is its recipient 4D4D4D0000BC614E."""
    kms = pki.kms
    (originator,) = {c["originator_system_title"] for c in GURUX}
    (recipient,) = {c["recipient_system_title"] for c in GURUX}
    (public,) = {c["signer_public_key"] for c in GURUX}
    assert GURUX_SIGNER.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    ) == b"\x04" + bytes.fromhex(public)
    meter = field_meter(kms, tmp_path, 1, 1)
    assert meter.system_title == bytes.fromhex(originator)
    certify(kms, meter.system_title, GURUX_SIGNER)
    config = dataclasses.replace(kms.config, client_system_title=bytes.fromhex(recipient))

    cases = [c for c in GURUX if not c.get("fail")]
    assert len(cases) == 4
    for case in cases:
        apdu = bytes.fromhex(case["apdu"])
        verified = kms.services_with(config).general_signing.verify(apdu)
        assert verified.transaction_id == bytes.fromhex(case["transaction_id"])
        assert verified.content[0] in (0xC8, 0xC9)
        with pytest.raises(InvalidSignature):  # Gurux's signature covers the content
            kms.services_with(config).general_signing.verify(
                apdu[:-70] + bytes([apdu[-70] ^ 1]) + apdu[-69:]
            )
    (failing,) = [c for c in GURUX if c.get("fail")]
    with pytest.raises(InputError) as info:
        kms.services_with(config).general_signing.verify(bytes.fromhex(failing["apdu"]))
    assert info.value.field == "content"
