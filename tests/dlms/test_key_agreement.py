"""kms.dlms.key_agreement: gurux.dlms.java's key_agreement request and reply (a vector file),
pyca signatures over the signed layouts, golden bytes, strict parsing.

gurux-dlms for Python (1.0.203) cannot serve as an oracle here: its
``GXDLMSSecuritySetup.keyAgreement`` builds its data from ``getEphemeralPublicKeyData``, which
returns ``None``, and its server answers method 3 with nothing. gurux.dlms.java has both sides;
its bytes were recorded once (tests/vectors/README.md) and are checked here on every run.
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
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.general_ciphering import (
    AgreedKey,
    GeneralCipheringApdu,
    parse_general_ciphering_apdu,
)
from kms.dlms.kdf import AlgorithmId, concat_kdf, other_info_ephemeral_unified
from kms.dlms.key_agreement import (
    MAX_KEY_AGREEMENT_ENTRIES,
    METHOD_KEY_AGREEMENT,
    KeyAgreementEntry,
    KeyAgreementRequest,
    KeyAgreementScheme,
    agreed_key_scheme,
    coordinate_length,
    ephemeral_key_data,
    ephemeral_signed_data,
    key_agreement_request,
    key_agreement_response_data,
    one_pass_agreed_key,
    one_pass_key_ciphered_data,
    one_pass_signed_data,
    parse_ephemeral_key_data,
    parse_key_agreement_request,
    parse_key_agreement_response_data,
    parse_one_pass_key_ciphered_data,
    public_key_length,
    signature_length,
    static_unified_agreed_key,
)
from kms.dlms.key_transfer import KeyId
from kms.dlms.obis import security_setup_logical_name
from kms.dlms.security_control import SecurityControl
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError
from tests.dlms.mutations import mutated
from tests.utils import load_nist_vectors, load_vectors_from_file

SUITE0 = SecuritySuite.AES_GCM_128
SUITE1 = SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256
SUITE2 = SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384
LN = security_setup_logical_name(0)
GURUX = load_vectors_from_file("dlms/gurux-java/key_agreement.txt", load_nist_vectors)
# RFC 6979 A.2.5 (P-256) and A.2.6 (P-384) keys as signers, fixed keys as ephemeral keys.
SIGNER_256 = ec.derive_private_key(
    int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16), ec.SECP256R1()
)
SIGNER_384 = ec.derive_private_key(
    int(
        "6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D8"
        "96D5724E4C70A825F872C9EA60D2EDF5",
        16,
    ),
    ec.SECP384R1(),
)
EPHEMERAL_256 = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
EPHEMERAL_384 = ec.derive_private_key(0xFEDCBA0987654321, ec.SECP384R1())


def raw_public(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    numbers = public.public_numbers()
    size = (public.curve.key_size + 7) // 8
    return numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")


def public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    curve: ec.EllipticCurve = ec.SECP256R1() if len(raw) == 64 else ec.SECP384R1()
    half = len(raw) // 2
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"), curve
    ).public_key()


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    size = (key.curve.key_size + 7) // 8
    digest = hashes.SHA256() if size == 32 else hashes.SHA384()
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def verify(raw_key: bytes, signature: bytes, data: bytes) -> None:
    half = len(signature) // 2
    digest = hashes.SHA256() if half == 32 else hashes.SHA384()
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    public_key(raw_key).verify(der, data, ec.ECDSA(digest))


def entry(key_id: int, suite: SecuritySuite = SUITE1) -> KeyAgreementEntry:
    ephemeral, signer = (
        (EPHEMERAL_256, SIGNER_256) if suite is SUITE1 else (EPHEMERAL_384, SIGNER_384)
    )
    q = raw_public(ephemeral)
    return KeyAgreementEntry(
        KeyId(key_id), ephemeral_key_data(q, sign(signer, ephemeral_signed_data(KeyId(key_id), q)))
    )


# --- gurux.dlms.java ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", GURUX, ids=lambda c: f"key_id{c['key_id']}")
def test_gurux_java_request(case: dict[str, Any]) -> None:
    apdu = bytes.fromhex(case["request"])
    request = parse_key_agreement_request(apdu)
    assert request.logical_name == LN
    assert request.invoke_id_and_priority == 0xC1
    assert request.suite is SUITE1
    (only,) = request.entries
    assert only.key_id == int(case["key_id"])
    q, signature = parse_ephemeral_key_data(only.key_ciphered_data, SUITE1)
    assert q == bytes.fromhex(case["client_ephemeral_public_key"])
    # Gurux signs key_id || x || y with the client's signing key: our layout.
    verify(
        bytes.fromhex(case["client_signing_public_key"]),
        signature,
        ephemeral_signed_data(only.key_id, q),
    )
    # ... and not the bare x || y, or 04 || x || y.
    for other in (q, b"\x04" + q):
        with pytest.raises(InvalidSignature):
            verify(bytes.fromhex(case["client_signing_public_key"]), signature, other)
    assert request.to_bytes() == apdu
    assert key_agreement_request(request.entries) == apdu


def test_gurux_java_reply_and_agreed_key() -> None:
    case = GURUX[0]
    (server,) = parse_key_agreement_response_data(bytes.fromhex(case["reply_data"]))
    assert server.key_id is KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY
    q_server, signature = parse_ephemeral_key_data(server.key_ciphered_data, SUITE1)
    verify(
        bytes.fromhex(case["server_signing_public_key"]),
        signature,
        ephemeral_signed_data(server.key_id, q_server),
    )
    client_ephemeral = ec.derive_private_key(
        int(case["client_ephemeral_private_key"], 16), ec.SECP256R1()
    )
    z = client_ephemeral.exchange(ec.ECDH(), public_key(q_server))
    other_info = other_info_ephemeral_unified(
        AlgorithmId.AES_GCM_128,
        bytes.fromhex(case["client_system_title"]),
        bytes.fromhex(case["server_system_title"]),
    )
    # The GUEK gurux.dlms.java's server derived: same KDF, same OtherInfo (client title first).
    assert concat_kdf(SUITE1, z, other_info) == bytes.fromhex(case["agreed_key"])
    assert key_agreement_response_data([server]) == bytes.fromhex(case["reply_data"])


# --- golden bytes -------------------------------------------------------------------------------


def test_golden_request_bytes() -> None:
    e0 = entry(0)
    apdu = key_agreement_request([e0])
    assert apdu == bytes.fromhex("C301C1 0040 00002B0000FF 03 01 0101 0202 1600 098180") + (
        e0.key_ciphered_data
    )
    assert METHOD_KEY_AGREEMENT == 3


def test_suite_2_shape_and_keywords() -> None:
    e2 = entry(2, SUITE2)
    apdu = key_agreement_request([e2], invoke=0x45, logical_name=security_setup_logical_name(3))
    assert apdu == bytes.fromhex("C30145 0040 00002B0003FF 03 01 0101 0202 1602 0981C0") + (
        e2.key_ciphered_data
    )
    request = parse_key_agreement_request(apdu)
    assert request == KeyAgreementRequest(0x45, security_setup_logical_name(3), (e2,))
    assert request.suite is SUITE2


def test_several_entries_round_trip() -> None:
    entries = [entry(2), entry(0), entry(3), entry(1)]
    apdu = key_agreement_request(entries)
    assert parse_key_agreement_request(apdu).entries == tuple(entries)
    data = key_agreement_response_data(entries)
    assert apdu.endswith(data)
    assert parse_key_agreement_response_data(data) == tuple(entries)


@pytest.mark.parametrize("suite", [SUITE1, SUITE2])
def test_signed_layouts(suite: SecuritySuite) -> None:
    ephemeral, signer = (
        (EPHEMERAL_256, SIGNER_256) if suite is SUITE1 else (EPHEMERAL_384, SIGNER_384)
    )
    q = raw_public(ephemeral)
    assert len(q) == public_key_length(suite)
    assert ephemeral_signed_data(KeyId.MASTER_KEY, q) == b"\x03" + q
    assert one_pass_signed_data(q) == b"\x01" + q
    signature = sign(signer, one_pass_signed_data(q))
    assert len(signature) == signature_length(suite)
    data = one_pass_key_ciphered_data(q, signature)
    assert data == q + signature == ephemeral_key_data(q, signature)
    assert parse_one_pass_key_ciphered_data(data, suite) == (q, signature)
    verify(raw_public(signer), signature, one_pass_signed_data(q))


def test_lengths() -> None:
    assert [coordinate_length(SUITE1), coordinate_length(SUITE2)] == [32, 48]
    assert [public_key_length(SUITE1), public_key_length(SUITE2)] == [64, 96]
    assert [signature_length(SUITE1), signature_length(SUITE2)] == [64, 96]
    for call in (coordinate_length, public_key_length, signature_length):
        with pytest.raises(InputError, match="suite 0 has no public-key algorithms"):
            call(SUITE0)


# --- general-ciphering agreed-key ---------------------------------------------------------------


def test_one_pass_agreed_key_is_guruxs_layout() -> None:
    q = raw_public(EPHEMERAL_256)
    signature = sign(SIGNER_256, one_pass_signed_data(q))
    agreed = one_pass_agreed_key(q, signature)
    # Gurux .NET GXDLMS.Cipher1: 01 (present) 02 (agreed-key) 01 01 (key-parameters) 81 80 ...
    assert b"\x01" + agreed.to_bytes() == bytes.fromhex("01 02 01 01 8180") + q + signature
    apdu = GeneralCipheringApdu(
        bytes(8), bytes.fromhex("4D4D4D0000000001"), bytes.fromhex("4D4D4D0000BC614E"), b"", b"",
        agreed, SecurityControl.from_byte(0x31), 1, bytes(13),
    )  # fmt: skip
    parsed = parse_general_ciphering_apdu(apdu.to_bytes())
    assert isinstance(parsed.key_info, AgreedKey)
    assert agreed_key_scheme(parsed.key_info) is KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN
    assert parse_one_pass_key_ciphered_data(parsed.key_info.key_ciphered_data, SUITE1) == (
        q,
        signature,
    )


def test_static_unified_agreed_key() -> None:
    agreed = static_unified_agreed_key()
    assert agreed.to_bytes() == bytes.fromhex("02 01 02 00")
    assert agreed_key_scheme(agreed) is KeyAgreementScheme.STATIC_UNIFIED_MODEL


@pytest.mark.parametrize(
    ("agreed", "field", "message"),
    [
        (AgreedKey(b"", b""), "key_parameters", "got nothing"),
        (AgreedKey(b"\x00", b""), "key_parameters", "got 00"),
        (AgreedKey(b"\x03", b""), "key_parameters", "got 03"),
        (AgreedKey(b"\x01\x00", b""), "key_parameters", "got 0100"),
        (AgreedKey(b"\x02", b"\x00"), "key_ciphered_data", "carries no key-ciphered-data, got 1"),
    ],
)
def test_agreed_key_scheme_rejects(agreed: AgreedKey, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        agreed_key_scheme(agreed)
    assert info.value.field == field
    assert info.value.source == "agreed-key"


@pytest.mark.parametrize(("length", "suite"), [(127, SUITE1), (129, SUITE1), (128, SUITE2)])
def test_parse_key_data_rejects_length(length: int, suite: SecuritySuite) -> None:
    for parse in (parse_ephemeral_key_data, parse_one_pass_key_ciphered_data):
        with pytest.raises(InputError, match=f"must be {4 * coordinate_length(suite)} bytes"):
            parse(bytes(length), suite)
    with pytest.raises(InputError, match="no public-key algorithms"):
        parse_ephemeral_key_data(bytes(128), SUITE0)


# --- builder: caller bugs are ValueError / TypeError --------------------------------------------


@pytest.mark.parametrize(
    ("entries", "error", "message"),
    [
        ([], ValueError, "key_agreement takes 1 to 4 entries, got 0"),
        ([entry(0), entry(1), entry(2), entry(3), entry(0)], ValueError, "got 5"),
        ([entry(0), entry(0)], ValueError, "key_id GLOBAL_UNICAST_ENCRYPTION_KEY appears twice"),
        ([entry(0), entry(1, SUITE2)], ValueError, "differ in length (one request is one suite)"),
        (["x"], TypeError, "entries must be KeyAgreementEntry"),
    ],
)
def test_builder_rejects(entries: list[Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        key_agreement_request(entries)
    with pytest.raises(error, match=re.escape(message)):
        key_agreement_response_data(entries)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: KeyAgreementEntry(KeyId(0), bytes(127)), ValueError, "128 or 192 bytes"),
        (lambda: KeyAgreementEntry(4, bytes(128)), ValueError, "4 is not a valid KeyId"),  # type: ignore[arg-type]
        (lambda: KeyAgreementEntry(True, bytes(128)), TypeError, "key_id must be a KeyId"),  # type: ignore[arg-type]
        (lambda: KeyAgreementEntry(KeyId(0), "00"), TypeError, "must be bytes"),  # type: ignore[arg-type]
        (lambda: ephemeral_signed_data(KeyId(0), bytes(65)), ValueError, "64 (P-256) or 96"),
        (lambda: ephemeral_key_data(bytes(64), bytes(96)), ValueError, "signature must be 64"),
        (lambda: one_pass_signed_data(bytes(97)), ValueError, "got 97"),
        (lambda: key_agreement_request([entry(0)], invoke=0x31), ValueError, "reserved bits"),
        (
            lambda: key_agreement_request([entry(0)], logical_name=bytes(6)),
            ValueError,
            "0.0.0.0.0.0 is not a security setup",
        ),
    ],
)
def test_caller_bugs(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


# --- parser: malformed input is InputError naming field and offset -------------------------------

GOOD = key_agreement_request([entry(0)])
H = GOOD[:13].hex()  # header through "parameters present"
D = entry(0).key_ciphered_data.hex()
E0 = "0202 1600 098180" + D
KA = "key_agreement_data"


def _apdu(body: str) -> bytes:
    return bytes.fromhex(body.replace(" ", ""))


PARSER_ERRORS = [
    (b"", "tag", "truncated: need 1 byte, 0 left at offset 0"),
    (_apdu("c7" + GOOD.hex()[2:]), "tag", "expected 0xc3 (action-request), got 0xc7 at offset 0"),
    (_apdu(H[:22] + "02" + H[24:] + "0101" + E0), "method_id", "expected 0x03 (key_agreement)"),
    (_apdu(H[:4] + "f1" + H[6:] + "0101" + E0), "invoke_id_and_priority", "reserved bits 4-5"),
    (_apdu(H), KA, "truncated: need 1 byte, 0 left at offset 13"),
    (_apdu(H + "0201" + E0), KA, "expected tag 0x01 (array), got 0x02 at offset 13"),
    (_apdu(H + "0100"), KA, "key_agreement takes 1 to 4 entries, got 0 at offset 13"),
    (_apdu(H + "0105"), KA, "takes 1 to 4 entries, got 5 at offset 13"),
    (_apdu(H + "018101"), KA, "non-minimal A-XDR length encoding 0x81 for 1 at offset 14"),
    (_apdu(H + "0101 0102"), f"{KA}[0]", "expected tag 0x02 (structure), got 0x01 at offset 15"),
    (_apdu(H + "0101 0203 1600"), f"{KA}[0]", "must have 2 fields, got 3 at offset 16"),
    (_apdu(H + "0101 0202 1700"), f"{KA}[0].key_id", "expected tag 0x16 (enum), got 0x17"),
    (_apdu(H + "0101 0202 1604 098180" + D), f"{KA}[0].key_id", "unknown key_id 4; expected 0..3"),
    (
        _apdu(H + "0101 0202 1600 0a8180" + D),
        f"{KA}[0].key_ciphered_data",
        "expected tag 0x09 (octet-string), got 0x0a at offset 19",
    ),
    (
        _apdu(H + "0101 0202 1600 097f" + D[:-2]),
        f"{KA}[0].key_ciphered_data",
        "must be 128 or 192 bytes (x || y || r || s on P-256 or P-384), got 127 at offset 19",
    ),
    (
        _apdu(H + "0101 0202 1600 098180" + D[:-2]),
        f"{KA}[0].key_ciphered_data",
        "truncated: need 128 bytes, 127 left at offset 22",
    ),
    (
        _apdu(H + "0102" + E0 + E0),
        f"{KA}[1].key_id",
        "key_id GLOBAL_UNICAST_ENCRYPTION_KEY appears twice at offset 152",
    ),
    (
        _apdu(H + "0102" + E0 + "0202 1601 0981c0" + entry(1, SUITE2).key_ciphered_data.hex()),
        f"{KA}[1].key_ciphered_data",
        "is 192 bytes but key_agreement_data[0]'s is 128 (one request is one suite) at offset 154",
    ),
    (GOOD + b"\x00", "end", "1 trailing byte at offset 150"),
]


@pytest.mark.parametrize(("apdu", "field", "message"), PARSER_ERRORS)
def test_parser_rejects(apdu: bytes, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_key_agreement_request(apdu)
    assert info.value.field == field
    assert info.value.source == "key_agreement action-request"
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (b"", KA, "truncated: need 1 byte, 0 left at offset 0"),
        (_apdu("0101" + E0) + b"\x00", "end", "1 trailing byte at offset 137"),
        (_apdu("0101 0202 1600 0900"), f"{KA}[0].key_ciphered_data", "got 0 at offset 6"),
        (_apdu("0901 00"), KA, "expected tag 0x01 (array), got 0x09 at offset 0"),
    ],
)
def test_response_parser_rejects(data: bytes, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_key_agreement_response_data(data)
    assert info.value.field == field
    assert info.value.source == "key_agreement response data"
    assert message in str(info.value)


# --- property tests: the parsers raise InputError and nothing else ------------------------------

SEEDS = [
    GOOD,
    key_agreement_request([entry(1), entry(3)], invoke=0x42),
    key_agreement_request([entry(2, SUITE2)], logical_name=security_setup_logical_name(9)),
    *[bytes.fromhex(case["request"]) for case in GURUX],
]
PARSER_SETTINGS = settings(max_examples=5000, deadline=None)


@PARSER_SETTINGS
@given(st.one_of(mutated(*SEEDS), st.binary(max_size=40).map(GOOD[:13].__add__)))
def test_request_parser_raises_only_input_error(apdu: bytes) -> None:
    try:
        request = parse_key_agreement_request(apdu)
    except InputError:
        return
    assert request.to_bytes() == apdu


@PARSER_SETTINGS
@given(mutated(*[seed[13:] for seed in SEEDS], bytes.fromhex(GURUX[0]["reply_data"])))
def test_response_parser_raises_only_input_error(data: bytes) -> None:
    try:
        entries = parse_key_agreement_response_data(data)
    except InputError:
        return
    assert key_agreement_response_data(entries) == data


@PARSER_SETTINGS
@given(st.binary(max_size=200), st.sampled_from([SUITE1, SUITE2]))
def test_key_data_parsers_raise_only_input_error(data: bytes, suite: SecuritySuite) -> None:
    try:
        q, signature = parse_ephemeral_key_data(data, suite)
    except InputError:
        assert len(data) != 4 * coordinate_length(suite)
        return
    assert q + signature == data
    assert len(q) == len(signature) == public_key_length(suite)


@given(st.binary(max_size=3), st.binary(max_size=3))
def test_agreed_key_scheme_raises_only_input_error(parameters: bytes, data: bytes) -> None:
    try:
        scheme = agreed_key_scheme(AgreedKey(parameters, data))
    except InputError:
        return
    assert parameters == bytes([scheme]) and scheme in (1, 2)
    assert scheme == 1 or data == b""


def test_max_entries() -> None:
    assert MAX_KEY_AGREEMENT_ENTRIES == 4
