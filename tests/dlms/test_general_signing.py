"""kms.dlms.general_signing: APDUs signed by gurux.dlms.java (a vector file) verified with pyca
over signed_data, golden bytes, the unsigned-template flow, strict parsing.

The vector file settles which bytes Gurux signs: its signatures verify over signed_data (the
content's length octets left out) and fail over the GBREF reading that includes them.
gurux-dlms for Python has no general-signing to compare with (the last test shows it).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.axdr import encode_length
from kms.dlms.general_signing import (
    GENERAL_SIGNING,
    SIGNATURE_LENGTHS,
    GeneralSigningApdu,
    parse_general_signing_apdu,
    signed_data,
)
from kms.errors import InputError
from tests.dlms.mutations import mutated
from tests.utils import load_nist_vectors, load_vectors_from_file

GURUX = load_vectors_from_file("dlms/gurux-java/general_signing.txt", load_nist_vectors)
ST_C = bytes.fromhex("4D4D4D0000000001")
ST_S = bytes.fromhex("4D4D4D0000BC614E")
TXID = bytes.fromhex("0000000000000001")
# Green Book 8.1's glo-get-request (SC 30) as the content.
CONTENT = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
SIGNER_256 = ec.derive_private_key(
    int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16), ec.SECP256R1()
)
SIGNER_384 = ec.derive_private_key(0x0123456789ABCDEF0123456789ABCDEF, ec.SECP384R1())
SIG64 = bytes(range(64))
SIG96 = bytes(range(96))


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    size = (key.curve.key_size + 7) // 8
    digest = hashes.SHA256() if size == 32 else hashes.SHA384()
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def verify(public: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    half = len(signature) // 2
    digest = hashes.SHA256() if half == 32 else hashes.SHA384()
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    public.verify(der, data, ec.ECDSA(digest))


def raw_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"), ec.SECP256R1()
    ).public_key()


def template(content: bytes = CONTENT, **changes: Any) -> GeneralSigningApdu:
    fields: dict[str, Any] = {
        "transaction_id": TXID,
        "originator_system_title": ST_C,
        "recipient_system_title": ST_S,
        "date_time": b"",
        "other_information": b"",
        "content": content,
        "signature": b"",
    }
    fields.update(changes)
    return GeneralSigningApdu(**fields)


# --- gurux.dlms.java ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [c for c in GURUX if not c.get("fail")], ids=lambda c: f"sc{c['security']}"
)
def test_gurux_java_signatures_verify_over_signed_data(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["apdu"])
    apdu = parse_general_signing_apdu(data)
    assert apdu.transaction_id == bytes.fromhex(case["transaction_id"])
    assert apdu.originator_system_title == bytes.fromhex(case["originator_system_title"])
    assert apdu.recipient_system_title == bytes.fromhex(case["recipient_system_title"])
    assert (apdu.date_time, apdu.other_information) == (b"", b"")
    assert apdu.content[0] in (0xC8, 0xC9)  # glo-get-request, glo-set-request
    length = apdu.content[1]
    sc_at = 2 if length < 0x80 else 2 + (length & 0x7F)
    assert apdu.content[sc_at] == int(case["security"], 16) | 1  # SC of the glo- APDU
    assert len(apdu.signature) == 64
    assert apdu.to_bytes() == data
    public = raw_public_key(bytes.fromhex(case["signer_public_key"]))
    verify(public, apdu.signature, signed_data(apdu))
    # GBREF's reading (the content's length octets signed too) does not verify.
    with_length = signed_data(apdu)[: -len(apdu.content)] + encode_length(len(apdu.content))
    with pytest.raises(InvalidSignature):
        verify(public, apdu.signature, with_length + apdu.content)


def test_gurux_java_long_content_has_a_two_byte_length() -> None:
    """The 200-byte writes ciphered (SC 2x, 3x) make contents above 127 bytes, so the left-out
    length is 81 nn. (Gurux's authentication-only content carries the tag without the APDU.)"""
    contents = [parse_general_signing_apdu(bytes.fromhex(c["apdu"])).content for c in GURUX[:4]]
    assert [len(content) >= 0x80 for content in contents] == [False, True, True, False]


def test_gurux_java_unciphered_content_has_no_length() -> None:
    """With security none Gurux writes the plain APDU without an octet-string length."""
    (case,) = [c for c in GURUX if c.get("fail")]
    with pytest.raises(InputError) as info:
        parse_general_signing_apdu(bytes.fromhex(case["apdu"]))
    assert info.value.field == "content"
    assert "bad A-XDR length form 0xc0 at offset 30" in str(info.value)


def test_installed_gurux_dlms_has_no_general_signing() -> None:
    """gurux-dlms 1.0.203 for Python refuses tag 0xDF outright: no oracle there."""
    apdu = bytes.fromhex(GURUX[0]["apdu"])
    with pytest.raises(ValueError, match="cryptedData"):
        GXDLMSChippering.decryptAesGcm(None, AesGcmParameter(), GXByteBuffer(apdu))


# --- golden bytes and the signing flow ----------------------------------------------------------


def test_golden_bytes() -> None:
    apdu = template().with_signature(SIG64)
    expected = (
        bytes.fromhex("DF 08 0000000000000001 08 4D4D4D0000000001 08 4D4D4D0000BC614E 00 00 20")
        + CONTENT
        + b"\x40"
        + SIG64
    )
    assert apdu.to_bytes() == expected
    assert signed_data(apdu) == expected[1:30] + CONTENT
    assert parse_general_signing_apdu(expected) == apdu
    assert GENERAL_SIGNING == 0xDF
    assert SIGNATURE_LENGTHS == (64, 96)


@pytest.mark.parametrize("signer", [SIGNER_256, SIGNER_384], ids=["suite1", "suite2"])
def test_sign_a_template_then_verify(signer: ec.EllipticCurvePrivateKey) -> None:
    unsigned = template(date_time=bytes(12), other_information=b"\x01\x02")
    assert not unsigned.signed
    signed = unsigned.with_signature(sign(signer, signed_data(unsigned)))
    assert signed.signed
    assert signed_data(signed) == signed_data(unsigned)
    parsed = parse_general_signing_apdu(signed.to_bytes())
    assert parsed == signed
    verify(signer.public_key(), parsed.signature, signed_data(parsed))


def test_long_fields_and_empty_recipient() -> None:
    content = bytes(300)
    apdu = template(
        content, recipient_system_title=b"", other_information=bytes(200), transaction_id=b""
    ).with_signature(SIG96)
    data = apdu.to_bytes()
    assert data.startswith(bytes.fromhex("DF 00 08 4D4D4D0000000001 00 00 81C8") + bytes(200))
    assert data.endswith(bytes.fromhex("82012C") + content + b"\x60" + SIG96)
    assert signed_data(apdu).endswith(bytes.fromhex("81C8") + bytes(200) + content)
    assert parse_general_signing_apdu(data) == apdu


# --- builder: caller bugs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"originator_system_title": b""}, ValueError, "originator_system_title must be 8 bytes"),
        ({"recipient_system_title": bytes(7)}, ValueError, "must be 0 or 8 bytes, got 7"),
        ({"content": b""}, ValueError, "content must not be empty"),
        ({"signature": bytes(63)}, ValueError, "signature must be 64 or 96 bytes"),
        ({"transaction_id": "01"}, TypeError, "transaction_id must be bytes"),
    ],
)
def test_builder_rejects(changes: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        template(**changes)


def test_template_has_no_wire_form() -> None:
    with pytest.raises(ValueError, match="unsigned general-signing template has no wire form"):
        template().to_bytes()
    with pytest.raises(ValueError, match="needs a signature"):
        template().with_signature(b"")
    with pytest.raises(TypeError):
        signed_data(CONTENT)  # type: ignore[arg-type]


# --- parser: malformed input is InputError naming field and offset -------------------------------

GOOD = template().with_signature(SIG64).to_bytes()
HEAD = GOOD[:30].hex()  # through other-information


def _apdu(body: str) -> bytes:
    return bytes.fromhex(body.replace(" ", ""))


PARSER_ERRORS = [
    (b"", "tag", "truncated: need 1 byte, 0 left at offset 0"),
    (b"\xdd" + GOOD[1:], "tag", "expected 0xdf (general-signing), got 0xdd at offset 0"),
    (_apdu("df 09" + HEAD[4:20]), "transaction_id", "truncated: need 9 bytes, 8 left at offset 2"),
    (_apdu("df 00 07 4d4d4d00000000"), "originator_system_title", "must be 8, got 7 at offset 2"),
    (_apdu("df 00 00"), "originator_system_title", "must be 8, got 0 at offset 2"),
    (
        _apdu("df 00 08 4d4d4d0000000001 04 00000000"),
        "recipient_system_title",
        "must be 0 or 8, got 4 at offset 11",
    ),
    (_apdu(HEAD), "content", "truncated: need 1 byte, 0 left at offset 30"),
    (_apdu(HEAD + "00 40") + SIG64, "content", "content is empty at offset 30"),
    (_apdu(HEAD + "8101 00"), "content", "non-minimal A-XDR length encoding 0x81 for 1"),
    (_apdu(HEAD) + b"\x20" + CONTENT, "signature", "truncated: need 1 byte, 0 left at offset 63"),
    (
        _apdu(HEAD) + b"\x20" + CONTENT + b"\x3f" + SIG64[:63],
        "signature",
        "signature must be 64 or 96 bytes (r || s), got 63 at offset 63",
    ),
    (
        _apdu(HEAD) + b"\x20" + CONTENT + b"\x41" + SIG64 + b"\0",
        "signature",
        "got 65 at offset 63",
    ),
    (GOOD[:-1], "signature", "truncated: need 64 bytes, 63 left at offset 64"),
    (GOOD + b"\x00", "end", "1 trailing byte at offset 128"),
]


@pytest.mark.parametrize(("data", "field", "message"), PARSER_ERRORS)
def test_parser_rejects(data: bytes, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_general_signing_apdu(data)
    assert info.value.field == field
    assert info.value.source == "general-signing APDU"
    assert message in str(info.value)


SEEDS = [
    GOOD,
    template(bytes(200), recipient_system_title=b"").with_signature(SIG96).to_bytes(),
    *[bytes.fromhex(c["apdu"]) for c in GURUX],
]


@settings(max_examples=5000, deadline=None)
@given(st.one_of(mutated(*SEEDS), st.binary(max_size=60).map(GOOD[:1].__add__)))
def test_parser_raises_only_input_error(data: bytes) -> None:
    try:
        apdu = parse_general_signing_apdu(data)
    except InputError:
        return
    assert apdu.to_bytes() == data
    assert data[1:].startswith(signed_data(apdu)[: -len(apdu.content)])
