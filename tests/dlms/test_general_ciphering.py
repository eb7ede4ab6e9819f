"""kms.dlms.general_ciphering: golden bytes built by hand, gurux-dlms as a parsing oracle, strict
parsing.

No library in the test environment *builds* a general-ciphering APDU: gurux-dlms 1.0.203 has no
encoder for it (Gurux .NET and Java have one, for agreed-key only; the Python translator's
XML-to-PDU branch ignores the system-title elements, and its PDU-to-XML branch runs into the
decoder bug below), and dlms-cosem 25.1.0 has no general-ciphering at all. The golden bytes below
are therefore written by hand from the layout of notes section 2.6, and gurux-dlms serves as an
oracle for *parsing*: its decoder (``GXDLMSChippering.decryptAesGcm``) reads the agreed-key APDUs
this module builds and decrypts their content. That decoder calls setters the 1.0.203
``AesGcmParameter`` does not have (``setSystemTitle`` and three more), so the tests hand it a
subclass that adds them. It reads agreed-key only, so identified-key and wrapped-key have no
oracle.

gurux-dlms and cryptography are imported here only: the codec carries the payload without
interpreting it, and pyca builds real ciphertext for it to carry.
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Command, Security
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.general_ciphering import (
    GENERAL_CIPHERING,
    AgreedKey,
    GeneralCipheringApdu,
    IdentifiedKey,
    KekId,
    KeyId,
    KeyInfo,
    KeyInfoChoice,
    WrappedKey,
    general_ciphering_aad_fields,
    parse_general_ciphering_apdu,
)
from kms.dlms.security_control import MAX_INVOCATION_COUNTER, SecurityControl
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError

# Notes section 8.1 (Green Book Ed. 8.x Table 40) keys and IC; notes 8.2 for the second title.
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
ST = bytes.fromhex("4D4D4D0000BC614E")
RECIPIENT = bytes.fromhex("4D4D4D0000000001")
IC = 0x01234567
TXID = bytes.fromhex("0000000000000001")
APDU = bytes.fromhex("C0010000080000010000FF0200")
# The SC-30 payload of notes 8.1, carried as opaque bytes (its AAD was not a DD's).
PAYLOAD = bytes.fromhex("411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B")
# Notes section 8.4, first line: RFC 3394 of a 16-byte key, 24 bytes.
WRAPPED = bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
# One-Pass DH key-ciphered-data as Gurux lays it out: x || y (64) || signature (64).
ONE_PASS_DATA = bytes(range(0x80))

H_TX = "DD 08 0000000000000001"  # offsets 0..9
H_ORIG = "08 4D4D4D0000BC614E"  # offsets 10..18
H_RECIP = "08 4D4D4D0000000001"  # offsets 19..27
HEAD = H_TX + H_ORIG + H_RECIP + "00 00"  # date-time 28, other-information 29; 30 bytes
REST = "01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B"  # IC || payload
CONTENT = "1E 30" + REST  # ciphered-content: len, SC, IC, payload

GOLDEN = {
    "absent": (HEAD + "00" + CONTENT, None),
    "identified GUEK": (
        HEAD + "01 00 00" + CONTENT,
        IdentifiedKey(KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY),
    ),
    "identified GBEK": (
        HEAD + "01 00 01" + CONTENT,
        IdentifiedKey(KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY),
    ),
    "wrapped": (
        HEAD + "01 01 00 18" + WRAPPED.hex() + CONTENT,
        WrappedKey(KekId.MASTER_KEY, WRAPPED),
    ),
    # Static Unified Model C(0e,2s) as Gurux .NET writes it: key-parameters 02, no data.
    "agreed C(0e,2s)": (HEAD + "01 02 01 02 00" + CONTENT, AgreedKey(b"\x02", b"")),
    # One-Pass Diffie-Hellman C(1e,1s): key-parameters 01, 0x80 bytes of key-ciphered-data.
    "agreed C(1e,1s)": (
        HEAD + "01 02 01 01 81 80" + ONE_PASS_DATA.hex() + CONTENT,
        AgreedKey(b"\x01", ONE_PASS_DATA),
    ),
}


def sc(byte: int) -> SecurityControl:
    return SecurityControl.from_byte(byte)


def golden_apdu(key_info: KeyInfo | None) -> GeneralCipheringApdu:
    return GeneralCipheringApdu(TXID, ST, RECIPIENT, b"", b"", key_info, sc(0x30), IC, PAYLOAD)


# --- golden bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_parse_and_reencode(name: str) -> None:
    hex_golden, key_info = GOLDEN[name]
    golden = bytes.fromhex(hex_golden)
    parsed = parse_general_ciphering_apdu(golden)
    assert parsed == golden_apdu(key_info)
    assert parsed.key_info == key_info
    assert parsed.security_control == sc(0x30)
    assert parsed.invocation_counter == IC
    assert parsed.payload == PAYLOAD
    assert parsed.to_bytes() == golden
    assert golden_apdu(key_info).to_bytes() == golden


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_aad_fields_are_the_bytes_after_the_tag(name: str) -> None:
    golden = bytes.fromhex(GOLDEN[name][0])
    fields = general_ciphering_aad_fields(parse_general_ciphering_apdu(golden))
    assert fields == bytes.fromhex(H_TX[3:] + H_ORIG + H_RECIP + "00 00")
    assert fields == golden[1:30]


def test_aad_fields_with_every_field_set() -> None:
    apdu = GeneralCipheringApdu(
        b"\xaa", b"", ST, b"\x07\xe9", b"\x01\x02\x03", None, sc(0x31), 0, b""
    )
    assert general_ciphering_aad_fields(apdu) == bytes.fromhex(
        "01 AA 00 08 4D4D4D0000BC614E 02 07E9 03 010203"
    )


def test_key_info_choice_bytes() -> None:
    assert IdentifiedKey(KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY).to_bytes() == b"\x00\x01"
    assert WrappedKey(KekId.MASTER_KEY, WRAPPED).to_bytes() == b"\x01\x00\x18" + WRAPPED
    assert AgreedKey(b"\x02", b"").to_bytes() == bytes.fromhex("02 01 02 00")
    assert [IdentifiedKey.choice, WrappedKey.choice, AgreedKey.choice] == list(KeyInfoChoice)
    assert GENERAL_CIPHERING == Command.GENERAL_CIPHERING == 0xDD


def test_empty_system_titles_and_compression() -> None:
    # Compression (bit 7) is allowed in general-ciphering (notes section 2.1).
    apdu = GeneralCipheringApdu(b"", b"", b"", b"", b"", None, sc(0xB1), 7, b"\x01\x02")
    data = apdu.to_bytes()
    assert data == bytes.fromhex("DD 00 00 00 00 00 00 07 B1 00000007 0102")
    parsed = parse_general_ciphering_apdu(data)
    assert parsed == apdu
    assert parsed.security_control.compression


@pytest.mark.parametrize(
    ("size", "length_bytes", "content_length_bytes"),
    [
        (0x7F, "7F", "8184"),
        (0x80, "8180", "8185"),
        (0xFF, "81FF", "820104"),
        (0x100, "820100", "820105"),
    ],
)
def test_long_form_lengths(size: int, length_bytes: str, content_length_bytes: str) -> None:
    value = bytes(range(256))[:size]
    apdu = GeneralCipheringApdu(
        value, ST, b"", value, value, AgreedKey(value, value), sc(0x31), 1, value
    )
    data = apdu.to_bytes()
    length = bytes.fromhex(length_bytes)
    assert data[1:].startswith(length + value)
    assert general_ciphering_aad_fields(apdu).endswith(length + value + length + value)
    key_info = b"\x01\x02" + length + value + length + value
    content = bytes.fromhex(content_length_bytes) + b"\x31\x00\x00\x00\x01" + value
    assert data.endswith(key_info + content)
    assert parse_general_ciphering_apdu(data) == apdu


# --- gurux-dlms as a parsing oracle -----------------------------------------------------------


class _GuruxParameter(AesGcmParameter):  # type: ignore[misc]
    """The setters gurux-dlms 1.0.203's general-ciphering decoder calls but does not define."""

    vml = None

    def setSystemTitle(self, value: bytes) -> None:  # noqa: N802
        self.systemTitle = value

    def setRecipientSystemTitle(self, value: bytes) -> None:  # noqa: N802
        self.recipientSystemTitle = value

    def setKeyParameters(self, value: int) -> None:  # noqa: N802
        self.keyParameters = value

    def setInvocationCounter(self, value: int) -> None:  # noqa: N802
        self.invocationCounter = value


def _seal(apdu: GeneralCipheringApdu, plain: bytes, ek: bytes, ak: bytes) -> GeneralCipheringApdu:
    """``apdu`` carrying ``plain`` ciphered and authenticated, with gurux-dlms (Python)'s AAD."""
    control = apdu.security_control
    aad = bytes([control.to_byte()]) + ak
    if control.suite != SecuritySuite.AES_GCM_128:
        aad += general_ciphering_aad_fields(apdu)
    iv = apdu.originator_system_title + apdu.invocation_counter.to_bytes(4, "big")
    sealed = AESGCM(ek).encrypt(iv, plain, aad)
    return dataclasses.replace(apdu, payload=sealed[: len(plain) + 12])


@pytest.mark.parametrize("sc_byte", [0x30, 0x31, 0x32, 0xB1])
@pytest.mark.parametrize("key_info", [AgreedKey(b"\x02", b""), AgreedKey(b"\x01", ONE_PASS_DATA)])
def test_gurux_decodes_our_agreed_key_apdu(
    sc_byte: int, key_info: AgreedKey, capsys: pytest.CaptureFixture[str]
) -> None:
    length = sc(sc_byte).suite.key_length
    ek, ak = EK * (length // 16), AK * (length // 16)
    # gurux-dlms puts its own IC, as 8 bytes, where the transaction id goes in the AAD.
    unsealed = GeneralCipheringApdu(
        IC.to_bytes(8, "big"), ST, RECIPIENT, b"", b"", key_info, sc(sc_byte), IC, b""
    )
    data = _seal(unsealed, APDU, ek, ak).to_bytes()
    parameter = _GuruxParameter(0, b"", ek, ak)
    plain = GXDLMSChippering.decryptAesGcm(None, parameter, GXByteBuffer(data))
    capsys.readouterr()  # gurux-dlms prints what it finds in SC
    assert bytes(plain) == APDU
    assert bytes(parameter.systemTitle) == ST
    assert bytes(parameter.recipientSystemTitle) == RECIPIENT
    assert parameter.keyParameters == key_info.key_parameters[0]
    if key_info.key_ciphered_data:
        assert bytes(parameter.keyCipheredData) == key_info.key_ciphered_data
    assert parameter.securitySuite == sc_byte & 0x0F
    assert parameter.compression == bool(sc_byte & 0x80)
    assert parse_general_ciphering_apdu(data).payload == bytes(data[-(len(APDU) + 12) :])


@pytest.mark.parametrize("suite", [1, 2])
def test_gurux_aad_is_sc_ak_and_our_fields(suite: int) -> None:
    parameter = AesGcmParameter(0, ST, EK, AK)
    parameter.security = Security.AUTHENTICATION_ENCRYPTION
    parameter.securitySuite = suite
    parameter.recipientSystemTitle = RECIPIENT
    parameter.invocationCounter = IC
    sc_byte = 0x30 | suite
    theirs = GXDLMSChippering.getAuthenticatedData(parameter, sc_byte, b"")
    apdu = GeneralCipheringApdu(
        IC.to_bytes(8, "big"), ST, RECIPIENT, b"", b"", None, sc(sc_byte), IC, b""
    )
    assert bytes(theirs) == bytes([sc_byte]) + AK + general_ciphering_aad_fields(apdu)


# --- strict parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_input", "field", "offset"),
    [
        ("", "tag", 0),
        ("DB", "tag", 0),
        ("D8" + HEAD[2:] + "00" + CONTENT, "tag", 0),
        ("DD", "transaction_id", 1),
        ("DD 08 00000000", "transaction_id", 2),
        ("DD 80", "transaction_id", 1),
        ("DD 83 000001 00", "transaction_id", 1),
        ("DD 81 08 0000000000000001" + H_ORIG, "transaction_id", 1),
        ("DD 84 FFFFFFFF 00", "transaction_id", 6),
        (H_TX, "originator_system_title", 10),
        (H_TX + "07 4D4D4D0000BC61" + H_RECIP, "originator_system_title", 10),
        (H_TX + "09 4D4D4D0000BC614E00" + H_RECIP, "originator_system_title", 10),
        (H_TX + "81 08 4D4D4D0000BC614E" + H_RECIP, "originator_system_title", 10),
        (H_TX + "08 4D4D4D", "originator_system_title", 11),
        (H_TX + H_ORIG, "recipient_system_title", 19),
        (H_TX + H_ORIG + "01 4D 00 00 00" + CONTENT, "recipient_system_title", 19),
        (H_TX + H_ORIG + "08 4D4D", "recipient_system_title", 20),
        (H_TX + H_ORIG + H_RECIP, "date_time", 28),
        (H_TX + H_ORIG + H_RECIP + "0C 07E9", "date_time", 29),
        (H_TX + H_ORIG + H_RECIP + "8100", "date_time", 28),
        (H_TX + H_ORIG + H_RECIP + "00", "other_information", 29),
        (H_TX + H_ORIG + H_RECIP + "00 02 AA", "other_information", 30),
        (HEAD, "key_info", 30),
        (HEAD + "02" + CONTENT, "key_info", 30),
        (HEAD + "FF" + CONTENT, "key_info", 30),
        (HEAD + "01", "key_info", 31),
        (HEAD + "01 03 00" + CONTENT, "key_info", 31),
        (HEAD + "01 80 00" + CONTENT, "key_info", 31),
        (HEAD + "01 00", "key_id", 32),
        (HEAD + "01 00 02" + CONTENT, "key_id", 32),
        (HEAD + "01 00 FF" + CONTENT, "key_id", 32),
        (HEAD + "01 01", "kek_id", 32),
        (HEAD + "01 01 01 18" + WRAPPED.hex() + CONTENT, "kek_id", 32),
        (HEAD + "01 01 00", "key_ciphered_data", 33),
        (HEAD + "01 01 00 18" + WRAPPED[:20].hex(), "key_ciphered_data", 34),
        (HEAD + "01 02", "key_parameters", 32),
        (HEAD + "01 02 05 02", "key_parameters", 33),
        (HEAD + "01 02 01 02", "key_ciphered_data", 34),
        (HEAD + "01 02 01 01 81 80" + "00" * 10, "key_ciphered_data", 36),
        (HEAD + "01 02 01 01 80" + CONTENT, "key_ciphered_data", 34),
        (HEAD + "00", "ciphered_content", 31),
        (HEAD + "00 1F 30" + REST, "ciphered_content", 31),
        (HEAD + "00 1D 30" + REST, "ciphered_content", 31),
        (HEAD + "00" + CONTENT + "00", "ciphered_content", 31),
        (HEAD + "00 81 1E 30" + REST, "ciphered_content", 31),
        (HEAD + "00 04 30 012345", "ciphered_content", 31),
        (HEAD + "00 00", "ciphered_content", 31),
        (HEAD + "01 00 00 1F 30" + REST, "ciphered_content", 33),
        (HEAD + "00 1E 33" + REST, "security_control", 32),
        (HEAD + "01 00 00 1E 3F" + REST, "security_control", 34),
        (HEAD + "01 02 01 02 00 1E 35" + REST, "security_control", 36),
        (HEAD + "01 02 01 02 00 1E 03" + REST, "security_control", 36),
    ],
)
def test_parse_errors(hex_input: str, field: str, offset: int) -> None:
    with pytest.raises(InputError) as caught:
        parse_general_ciphering_apdu(bytes.fromhex(hex_input))
    assert caught.value.field == field
    assert f"field {field!r}" in str(caught.value)
    assert f"at offset {offset}" in str(caught.value)
    assert caught.value.source == "general-ciphering APDU"


@pytest.mark.parametrize(
    ("hex_input", "message"),
    [
        (HEAD + "02" + CONTENT, "presence byte must be 0x00 .absent. or 0x01 .present., got 0x02"),
        (HEAD + "01 03 00" + CONTENT, "unknown key-info choice tag 0x03"),
        (HEAD + "01 00 02" + CONTENT, "unknown key-id 2; expected 0 .global_unicast"),
        (HEAD + "01 01 01 00" + CONTENT, r"unknown kek-id 1; expected 0 \(master_key\)"),
        (H_TX + "07 4D4D4D0000BC61", "originator-system-title length must be 0 or 8, got 7"),
        (HEAD + "00 04 30 012345", "too short for the 5-byte security header"),
    ],
)
def test_error_messages_say_why(hex_input: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_general_ciphering_apdu(bytes.fromhex(hex_input))


# --- builders: caller bugs --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["originator_system_title", "recipient_system_title"])
@pytest.mark.parametrize("length", [1, 7, 9, 16])
def test_builder_rejects_system_title_length(name: str, length: int) -> None:
    with pytest.raises(ValueError, match=f"{name} must be 0 or 8 bytes, got {length}"):
        dataclasses.replace(golden_apdu(None), **{name: b"\x00" * length})  # type: ignore[arg-type]


@pytest.mark.parametrize("ic", [-1, MAX_INVOCATION_COUNTER + 1])
def test_builder_rejects_ic_range(ic: int) -> None:
    with pytest.raises(ValueError, match="invocation_counter"):
        dataclasses.replace(golden_apdu(None), invocation_counter=ic)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"transaction_id": "01"}, "transaction_id must be bytes"),
        ({"originator_system_title": "MMM"}, "originator_system_title must be bytes"),
        ({"recipient_system_title": None}, "recipient_system_title must be bytes"),
        ({"date_time": 0}, "date_time must be bytes"),
        ({"other_information": [1]}, "other_information must be bytes"),
        ({"key_info": KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY}, "key_info must be IdentifiedKey"),
        ({"key_info": b"\x00\x00"}, "key_info must be IdentifiedKey"),
        ({"security_control": 0x30}, "security_control must be SecurityControl"),
        ({"invocation_counter": "1"}, "invocation_counter must be int"),
        ({"invocation_counter": True}, "invocation_counter must be int"),
        ({"payload": "x"}, "payload must be bytes"),
    ],
)
def test_builder_rejects_wrong_types(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        dataclasses.replace(golden_apdu(None), **changes)  # type: ignore[arg-type]


def test_key_info_builders() -> None:
    broadcast = IdentifiedKey(1)  # type: ignore[arg-type]
    assert broadcast.key_id is KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY
    assert WrappedKey(0, WRAPPED).kek_id is KekId.MASTER_KEY  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"key_id must be 0 \(global_unicast_encryption_key\) or"):
        IdentifiedKey(2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kek_id must be 0 \(master_key\), got 1"):
        WrappedKey(1, WRAPPED)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_id must be a KeyId"):
        IdentifiedKey(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_id must be a KeyId"):
        IdentifiedKey("0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="kek_id must be a KekId"):
        WrappedKey(None, WRAPPED)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_ciphered_data must be bytes"):
        WrappedKey(KekId.MASTER_KEY, WRAPPED.hex())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_parameters must be bytes"):
        AgreedKey(2, b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_ciphered_data must be bytes"):
        AgreedKey(b"\x02", None)  # type: ignore[arg-type]


def test_aad_fields_type() -> None:
    with pytest.raises(TypeError, match="apdu must be GeneralCipheringApdu"):
        general_ciphering_aad_fields(bytes.fromhex(GOLDEN["absent"][0]))  # type: ignore[arg-type]


def test_bytearray_fields_are_copied() -> None:
    fields = {
        "transaction_id": bytearray(b"\x01"),
        "originator_system_title": bytearray(ST),
        "recipient_system_title": bytearray(RECIPIENT),
        "date_time": bytearray(b"\x02"),
        "other_information": bytearray(b"\x03"),
        "payload": bytearray(b"\x04"),
    }
    key_data, key_parameters = bytearray(WRAPPED), bytearray(b"\x02")
    wrapped = WrappedKey(KekId.MASTER_KEY, key_data)  # type: ignore[arg-type]
    agreed = AgreedKey(key_parameters, key_data)  # type: ignore[arg-type]
    apdu = dataclasses.replace(golden_apdu(wrapped), **fields)  # type: ignore[arg-type]
    for mutable in [*fields.values(), key_data, key_parameters]:
        mutable[0] ^= 0xFF
    assert apdu == GeneralCipheringApdu(
        b"\x01", ST, RECIPIENT, b"\x02", b"\x03", wrapped, sc(0x30), IC, b"\x04"
    )
    assert wrapped.key_ciphered_data == WRAPPED == agreed.key_ciphered_data
    assert agreed.key_parameters == b"\x02"
    for name in fields:
        assert type(getattr(apdu, name)) is bytes, name
    assert type(wrapped.key_ciphered_data) is type(agreed.key_parameters) is bytes


def test_bytearray_input_is_copied() -> None:
    data = bytearray.fromhex(GOLDEN["wrapped"][0])
    parsed = parse_general_ciphering_apdu(data)  # type: ignore[arg-type]
    data[:] = bytes(len(data))
    assert parsed.to_bytes() == bytes.fromhex(GOLDEN["wrapped"][0])


def test_repr_leaves_out_payload_and_wrapped_key() -> None:
    apdu = golden_apdu(WrappedKey(KekId.MASTER_KEY, WRAPPED))
    assert "payload" not in repr(apdu)
    assert "key_ciphered_data" not in repr(apdu)
    assert WRAPPED.hex() not in repr(apdu).lower()
    assert "MASTER_KEY" in repr(apdu)


# --- properties -------------------------------------------------------------------------------

# Every valid SC byte (48 of them): cheaper to draw than five separate fields.
CONTROLS = st.sampled_from(
    [SecurityControl.from_byte(b) for b in range(256) if b & 0x0F <= max(SecuritySuite)]
)
KEY_INFOS: st.SearchStrategy[KeyInfo | None] = st.one_of(
    st.none(),
    st.builds(IdentifiedKey, st.sampled_from(list(KeyId))),
    st.builds(WrappedKey, st.just(KekId.MASTER_KEY), st.binary(max_size=48)),
    st.builds(AgreedKey, st.binary(max_size=3), st.binary(max_size=140)),
)
SYSTEM_TITLES = st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))


@given(
    st.binary(max_size=20),
    SYSTEM_TITLES,
    SYSTEM_TITLES,
    st.binary(max_size=13),
    st.binary(max_size=10),
    KEY_INFOS,
    CONTROLS,
    st.integers(0, MAX_INVOCATION_COUNTER),
    st.binary(max_size=160),  # crosses the 0x80 length boundary
)
@settings(max_examples=10_000, deadline=None)
def test_round_trip(
    transaction_id: bytes,
    originator: bytes,
    recipient: bytes,
    date_time: bytes,
    other_information: bytes,
    key_info: KeyInfo | None,
    control: SecurityControl,
    ic: int,
    payload: bytes,
) -> None:
    apdu = GeneralCipheringApdu(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        key_info,
        control,
        ic,
        payload,
    )
    data = apdu.to_bytes()
    assert parse_general_ciphering_apdu(data) == apdu
    assert data[1:].startswith(general_ciphering_aad_fields(apdu))


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """Near misses of a valid APDU: truncated, extended or with one byte changed."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.binary(min_size=1, max_size=4).map(lambda extra: seed + extra),
        st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)).map(
            lambda change: seed[: change[0]] + bytes([change[1]]) + seed[change[0] + 1 :]
        ),
    )


SEEDS = [bytes.fromhex(hex_golden) for hex_golden, _ in GOLDEN.values()]
ANY_GENERAL_CIPHERING = st.one_of(
    st.binary(max_size=60),
    st.binary(max_size=60).map(b"\xdd".__add__),
    # The fixed head and then anything: reaches key-info and the ciphered content.
    st.binary(max_size=40).map(bytes.fromhex(HEAD).__add__),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.binary(max_size=40)).map(
        lambda t: bytes.fromhex(HEAD) + bytes([0x01, t[0], t[1]]) + t[2]
    ),
    *[_mutated(seed) for seed in SEEDS],
)


@given(ANY_GENERAL_CIPHERING)
@settings(max_examples=10_000, deadline=None)
def test_parse_raises_only_input_error(data: bytes) -> None:
    try:
        apdu = parse_general_ciphering_apdu(data)
    except InputError:
        return
    assert apdu.to_bytes() == data
