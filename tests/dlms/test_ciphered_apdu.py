"""kms.dlms.ciphered_apdu: Green Book golden bytes, oracles (gurux-dlms, dlms-cosem, pyca), strict
parsing.

gurux-dlms, dlms-cosem and cryptography are imported here only: the codec under test carries the
payload without interpreting it, so the oracles build real ciphertext for it to carry.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher
from dlms_cosem.security import SecurityControlField
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Command, Security
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.ciphered_apdu import (
    GENERAL_DED_CIPHERING,
    GENERAL_GLO_CIPHERING,
    SERVICE_TAGS,
    CipheredApdu,
    GeneralCiphering,
    ded_tag_for,
    encode_ciphered_apdu,
    encode_general_ciphering,
    glo_tag_for,
    parse_ciphered_apdu,
    parse_general_ciphering,
    plain_tag_for,
)
from kms.dlms.security_control import MAX_INVOCATION_COUNTER, SecurityControl
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError

# Notes section 8.1 (Green Book Ed. 8.x Table 40), suite 0.
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
ST = bytes.fromhex("4D4D4D0000BC614E")
IC = 0x01234567
APDU = bytes.fromhex("C0010000080000010000FF0200")
CIPHERTEXT = bytes.fromhex("411312FF935A47566827C467BC")
GOLDEN_8_1 = {
    0x10: "C81E1001234567C0010000080000010000FF020006725D910F9221D263877516",
    0x20: "C8122001234567411312FF935A47566827C467BC",
    0x30: "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B",
}
GOLDEN_8_1_PAYLOAD = {
    0x10: APDU + bytes.fromhex("06725D910F9221D263877516"),
    0x20: CIPHERTEXT,
    0x30: CIPHERTEXT + bytes.fromhex("7D825C3BE4A77C3FCC056B6B"),
}
# Notes section 8.3: glo-initiate-request.
GOLDEN_8_3 = bytes.fromhex(
    "21303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6F"
    "DB8E356855"
)
# Notes sections 2.5 and 8.5: general-glo-ciphering.
GOLDEN_DB = bytes.fromhex(
    "DB 08 4D4D4D0000BC614E 1E 30 01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B"
)
GOLDEN_DB_NO_ST = bytes.fromhex(
    "DB 00 1E 30 01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B"
)

TAGS = sorted(tag for pair in SERVICE_TAGS.values() for tag in pair)


def sc(byte: int) -> SecurityControl:
    return SecurityControl.from_byte(byte)


def gcm_payload(sc_byte: int, apdu: bytes, ic: int = IC, system_title: bytes = ST) -> bytes:
    """ciphertext || 12-byte tag of SC 0x3s with pyca (notes sections 2.2 and 2.3)."""
    sealed = AESGCM(EK).encrypt(system_title + ic.to_bytes(4, "big"), apdu, bytes([sc_byte]) + AK)
    return sealed[: len(apdu)] + sealed[len(apdu) : len(apdu) + 12]


# --- golden bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("sc_byte", sorted(GOLDEN_8_1))
def test_golden_8_1_parse_and_reencode(sc_byte: int) -> None:
    golden = bytes.fromhex(GOLDEN_8_1[sc_byte])
    apdu = parse_ciphered_apdu(golden)
    assert apdu.tag == 0xC8
    assert apdu.security_control == sc(sc_byte)
    assert apdu.invocation_counter == IC
    assert apdu.payload == GOLDEN_8_1_PAYLOAD[sc_byte]
    assert apdu.to_bytes() == golden
    assert encode_ciphered_apdu(0xC8, sc(sc_byte), IC, GOLDEN_8_1_PAYLOAD[sc_byte]) == golden
    assert plain_tag_for(apdu.tag) == (0xC0, "glo")


def test_golden_8_1_payload_is_real_gcm() -> None:
    # The SC-30 payload is what pyca computes: the codec carries the right bytes.
    assert gcm_payload(0x30, APDU) == GOLDEN_8_1_PAYLOAD[0x30]


def test_golden_8_3_glo_initiate_request() -> None:
    apdu = parse_ciphered_apdu(GOLDEN_8_3)
    assert (apdu.tag, apdu.security_control.to_byte(), apdu.invocation_counter) == (0x21, 0x30, IC)
    assert len(apdu.payload) == 0x30 - 5
    assert plain_tag_for(0x21) == (0x01, "glo")
    assert apdu.to_bytes() == GOLDEN_8_3


def test_golden_general_glo_ciphering() -> None:
    apdu = parse_general_ciphering(GOLDEN_DB)
    assert apdu.tag == GENERAL_GLO_CIPHERING
    assert apdu.system_title == ST
    assert apdu.security_control == sc(0x30)
    assert apdu.invocation_counter == IC
    assert apdu.payload == GOLDEN_8_1_PAYLOAD[0x30]
    assert apdu.to_bytes() == GOLDEN_DB
    assert encode_general_ciphering(0xDB, ST, sc(0x30), IC, apdu.payload) == GOLDEN_DB


def test_general_glo_ciphering_without_system_title() -> None:
    apdu = parse_general_ciphering(GOLDEN_DB_NO_ST)
    assert apdu.system_title == b""
    assert (apdu.security_control, apdu.invocation_counter) == (sc(0x30), IC)
    assert apdu.payload == GOLDEN_8_1_PAYLOAD[0x30]
    assert apdu.to_bytes() == GOLDEN_DB_NO_ST


def test_general_ded_ciphering_and_compression() -> None:
    # Compression (bit 7) is allowed in general-glo/ded (notes section 2.1).
    data = encode_general_ciphering(GENERAL_DED_CIPHERING, ST, sc(0xB0), 7, b"\x01\x02")
    assert data == bytes.fromhex("DC08") + ST + bytes.fromhex("07 B0 00000007 0102")
    parsed = parse_general_ciphering(data)
    assert parsed == GeneralCiphering(0xDC, ST, sc(0xB0), 7, b"\x01\x02")
    assert parsed.security_control.compression


@pytest.mark.parametrize(
    ("payload_length", "length_bytes"),
    [(0, "05"), (122, "7F"), (123, "8180"), (250, "81FF"), (251, "820100"), (70000, "84000111 75")],
)
def test_long_form_lengths(payload_length: int, length_bytes: str) -> None:
    payload = bytes(range(256)) * (payload_length // 256) + bytes(range(payload_length % 256))
    data = encode_ciphered_apdu(0xCB, sc(0x30), 1, payload)
    assert data[1:].startswith(bytes.fromhex(length_bytes))
    assert parse_ciphered_apdu(data).payload == payload
    general = encode_general_ciphering(0xDB, ST, sc(0x30), 1, payload)
    assert general[10:].startswith(bytes.fromhex(length_bytes))
    assert parse_general_ciphering(general).payload == payload


# --- the tag table ----------------------------------------------------------------------------


def test_tag_table_shape() -> None:
    assert len(SERVICE_TAGS) == 16
    assert len(set(TAGS)) == 32
    for plain, (glo, ded) in SERVICE_TAGS.items():
        step = 0x08 if plain >= 0xC0 else 0x20
        assert (glo, ded) == (plain + step, plain + 2 * step)
        assert (glo_tag_for(plain), ded_tag_for(plain)) == (glo, ded)
        assert plain_tag_for(glo) == (plain, "glo")
        assert plain_tag_for(ded) == (plain, "ded")
    assert GENERAL_GLO_CIPHERING not in TAGS
    assert GENERAL_DED_CIPHERING not in TAGS


def test_tag_table_covers_gurux() -> None:
    for name, value in Command.__members__.items():
        if name.startswith("GLO_") or name.startswith("DED_"):
            kind = name[:3].lower()
            assert plain_tag_for(int(value))[1] == kind, name


@pytest.mark.parametrize("plain", [0x0F, 0xC6, 0xD8, 0xDB, 0x00, 0xFF])
def test_no_ciphered_form(plain: int) -> None:
    with pytest.raises(ValueError, match="no glo- or ded- ciphered form"):
        glo_tag_for(plain)
    with pytest.raises(ValueError, match="no glo- or ded- ciphered form"):
        ded_tag_for(plain)


@pytest.mark.parametrize("tag", [0xC0, 0xDB, 0xDC, 0xDD, 0x0F, 0x00])
def test_plain_tag_for_unknown(tag: int) -> None:
    with pytest.raises(ValueError, match="not a glo- or ded- ciphered tag"):
        plain_tag_for(tag)


@pytest.mark.parametrize("bad", [-1, 256])
def test_tag_functions_range(bad: int) -> None:
    for function in (glo_tag_for, ded_tag_for, plain_tag_for):
        with pytest.raises(ValueError, match=r"must be 0\.\.255"):
            function(bad)


@pytest.mark.parametrize("bad", [True, "C0", b"\xc0", None])
def test_tag_functions_type(bad: object) -> None:
    for function in (glo_tag_for, ded_tag_for, plain_tag_for):
        with pytest.raises(TypeError, match="must be int"):
            function(bad)  # type: ignore[operator]


# --- oracles ----------------------------------------------------------------------------------


def _gurux(tag: int, apdu: bytes, ic: int, ignore_system_title: bool = False) -> bytes:
    p = AesGcmParameter(tag, ST, EK, AK)
    p.security = Security.AUTHENTICATION_ENCRYPTION
    p.invocationCounter = ic
    p.ignoreSystemTitle = ignore_system_title
    return bytes(GXDLMSChippering.encryptAesGcm(p, apdu))


def test_gurux_builds_the_golden_apdu() -> None:
    assert _gurux(0xC8, APDU, IC) == bytes.fromhex(GOLDEN_8_1[0x30])


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("size", [13, 200, 300])
def test_gurux_envelopes_parse(tag: int, size: int) -> None:
    plain = bytes([tag ^ 0xFF]) * size
    data = _gurux(tag, plain, 0xFEDCBA98)
    parsed = parse_ciphered_apdu(data)
    assert parsed.tag == tag
    assert parsed.security_control == sc(0x30)
    assert parsed.invocation_counter == 0xFEDCBA98
    assert parsed.payload == gcm_payload(0x30, plain, 0xFEDCBA98)
    assert parsed.to_bytes() == data


@pytest.mark.parametrize("ignore_system_title", [False, True])
@pytest.mark.parametrize("size", [13, 200])
def test_gurux_general_glo_ciphering_parses(ignore_system_title: bool, size: int) -> None:
    plain = bytes(range(size))
    data = _gurux(Command.GENERAL_GLO_CIPHERING, plain, 42, ignore_system_title)
    parsed = parse_general_ciphering(data)
    assert parsed.system_title == (b"" if ignore_system_title else ST)
    assert (parsed.security_control, parsed.invocation_counter) == (sc(0x30), 42)
    assert parsed.payload == gcm_payload(0x30, plain, 42)
    assert parsed.to_bytes() == data


@pytest.mark.parametrize("system_title", [ST, b""])
def test_dlms_cosem_general_glo_cipher_agrees(system_title: bytes) -> None:
    ours = encode_general_ciphering(0xDB, system_title, sc(0x30), IC, GOLDEN_8_1_PAYLOAD[0x30])
    theirs = GeneralGlobalCipher.from_bytes(ours)
    assert (theirs.system_title or b"") == system_title
    assert theirs.security_control.to_bytes() == b"\x30"
    assert theirs.invocation_counter == IC
    assert theirs.ciphered_text == GOLDEN_8_1_PAYLOAD[0x30]
    built = GeneralGlobalCipher(
        system_title or None, SecurityControlField(0, True, True), IC, GOLDEN_8_1_PAYLOAD[0x30]
    ).to_bytes()
    assert built == ours
    assert parse_general_ciphering(built).system_title == system_title


# --- strict parsing ---------------------------------------------------------------------------

C8_30 = GOLDEN_8_1[0x30]


@pytest.mark.parametrize(
    ("hex_input", "field", "offset"),
    [
        ("", "tag", 0),
        ("C0", "tag", 0),
        ("DB", "tag", 0),
        ("0F", "tag", 0),
        ("C8", "length", 1),
        ("C81E", "length", 1),
        ("C81F" + C8_30[4:], "length", 1),
        ("C81D" + C8_30[4:], "length", 1),
        (C8_30 + "00", "length", 1),
        ("C8811E" + C8_30[4:], "length", 1),
        ("C880" + C8_30[4:], "length", 1),
        ("C883" + C8_30[4:], "length", 1),
        ("C8820000", "length", 1),
        ("C8043001234567"[:10], "length", 1),
        ("C80430012345", "length", 1),
        ("C800", "length", 1),
        ("C81E8001234567" + C8_30[14:], "security_control", 2),
        ("C81EB001234567" + C8_30[14:], "security_control", 2),
        ("C81E3301234567" + C8_30[14:], "security_control", 2),
        ("C81E3F01234567" + C8_30[14:], "security_control", 2),
        ("D0813001" + "30" * 47, "length", 1),
    ],
)
def test_parse_ciphered_apdu_errors(hex_input: str, field: str, offset: int) -> None:
    with pytest.raises(InputError) as caught:
        parse_ciphered_apdu(bytes.fromhex(hex_input))
    assert caught.value.field == field
    assert f"field {field!r}" in str(caught.value)
    assert f"at offset {offset}" in str(caught.value)
    assert caught.value.source == "ciphered APDU"


def test_compression_message_says_why() -> None:
    with pytest.raises(InputError, match="compression bit set in a service-specific APDU"):
        parse_ciphered_apdu(bytes.fromhex("C81EC001234567" + C8_30[14:]))


DB_HEX = GOLDEN_DB.hex().upper()


@pytest.mark.parametrize(
    ("hex_input", "field", "offset"),
    [
        ("", "tag", 0),
        ("C8", "tag", 0),
        ("DD", "tag", 0),
        ("DB", "system_title", 1),
        ("DB08", "system_title", 2),
        ("DB084D4D4D", "system_title", 2),
        ("DB04" + DB_HEX[4:12] + DB_HEX[20:], "system_title", 1),
        ("DB09" + DB_HEX[4:], "system_title", 1),
        ("DB8108" + DB_HEX[4:], "system_title", 1),
        (DB_HEX[:20], "length", 10),
        (DB_HEX + "00", "length", 10),
        (DB_HEX[:20] + "1F" + DB_HEX[22:], "length", 10),
        (DB_HEX[:20] + "03300123", "length", 10),
        (DB_HEX[:20] + "811E" + DB_HEX[22:], "length", 10),
        (DB_HEX[:22] + "35" + DB_HEX[24:], "security_control", 11),
        ("DB001E35" + DB_HEX[24:], "security_control", 3),
        ("DB0005300123", "length", 2),
    ],
)
def test_parse_general_ciphering_errors(hex_input: str, field: str, offset: int) -> None:
    with pytest.raises(InputError) as caught:
        parse_general_ciphering(bytes.fromhex(hex_input))
    assert caught.value.field == field
    assert f"field {field!r}" in str(caught.value)
    assert f"at offset {offset}" in str(caught.value)
    assert caught.value.source == "general-glo/ded-ciphering APDU"


# --- builders: caller bugs --------------------------------------------------------------------


def test_builder_rejects_compression_on_service_specific() -> None:
    with pytest.raises(ValueError, match="compression bit is allowed only in general"):
        CipheredApdu(0xC8, sc(0xB0), IC, b"")


@pytest.mark.parametrize("tag", [0xC0, 0xDB, 0xDC, 0x0F])
def test_builder_rejects_unknown_tag(tag: int) -> None:
    with pytest.raises(ValueError, match="not a glo- or ded- ciphered tag"):
        encode_ciphered_apdu(tag, sc(0x30), IC, b"")


@pytest.mark.parametrize("tag", [0xC8, 0xDD, 0xDA])
def test_general_builder_rejects_other_tags(tag: int) -> None:
    with pytest.raises(ValueError, match="tag must be 0xdb or 0xdc"):
        encode_general_ciphering(tag, ST, sc(0x30), IC, b"")


@pytest.mark.parametrize("length", [1, 7, 9, 16])
def test_general_builder_rejects_system_title_length(length: int) -> None:
    with pytest.raises(ValueError, match="system_title must be 0 or 8 bytes"):
        encode_general_ciphering(0xDB, b"\x00" * length, sc(0x30), IC, b"")


@pytest.mark.parametrize("ic", [-1, MAX_INVOCATION_COUNTER + 1])
def test_builders_reject_ic_range(ic: int) -> None:
    with pytest.raises(ValueError, match="invocation_counter"):
        encode_ciphered_apdu(0xC8, sc(0x30), ic, b"")
    with pytest.raises(ValueError, match="invocation_counter"):
        encode_general_ciphering(0xDB, ST, sc(0x30), ic, b"")


def test_builders_reject_wrong_types() -> None:
    with pytest.raises(TypeError, match="payload must be bytes"):
        encode_ciphered_apdu(0xC8, sc(0x30), IC, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="security_control must be SecurityControl"):
        encode_ciphered_apdu(0xC8, 0x30, IC, b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="system_title must be bytes"):
        encode_general_ciphering(0xDB, "MMM", sc(0x30), IC, b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tag must be int"):
        encode_general_ciphering(b"\xdb", ST, sc(0x30), IC, b"")  # type: ignore[arg-type]


def test_bytearray_fields_are_copied() -> None:
    payload = bytearray(b"\x01")
    apdu = CipheredApdu(0xC8, sc(0x30), IC, payload)  # type: ignore[arg-type]
    payload[0] = 2
    assert apdu.payload == b"\x01"
    assert "payload" not in repr(apdu)


# --- properties -------------------------------------------------------------------------------

# Every valid SC byte (48 of them): cheaper to draw than five separate fields.
CONTROLS = st.sampled_from(
    [SecurityControl.from_byte(b) for b in range(256) if b & 0x0F <= max(SecuritySuite)]
)
ICS = st.integers(0, MAX_INVOCATION_COUNTER)
PAYLOADS = st.binary(max_size=160)  # crosses the 0x80 length boundary


@given(st.sampled_from(TAGS), CONTROLS, ICS, PAYLOADS)
@settings(max_examples=10000, deadline=None)
def test_ciphered_apdu_round_trip(
    tag: int, control: SecurityControl, ic: int, payload: bytes
) -> None:
    if control.compression:
        control = SecurityControl.from_byte(control.to_byte() & 0x7F)
    apdu = CipheredApdu(tag, control, ic, payload)
    assert parse_ciphered_apdu(apdu.to_bytes()) == apdu


@given(
    st.sampled_from([GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING]),
    st.sampled_from([b"", ST]),
    CONTROLS,
    ICS,
    PAYLOADS,
)
@settings(max_examples=10000, deadline=None)
def test_general_ciphering_round_trip(
    tag: int, system_title: bytes, control: SecurityControl, ic: int, payload: bytes
) -> None:
    apdu = GeneralCiphering(tag, system_title, control, ic, payload)
    assert parse_general_ciphering(apdu.to_bytes()) == apdu


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """Near misses of a valid APDU: truncated, extended or with one byte changed."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.binary(min_size=1, max_size=4).map(lambda extra: seed + extra),
        st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)).map(
            lambda change: seed[: change[0]] + bytes([change[1]]) + seed[change[0] + 1 :]
        ),
    )


ANY_CIPHERED = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(TAGS).flatmap(lambda tag: st.binary(max_size=40).map(bytes([tag]).__add__)),
    _mutated(bytes.fromhex(C8_30)),
)
ANY_GENERAL = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xdb", b"\xdc", b"\xdb\x08", b"\xdb\x00"]).flatmap(
        lambda head: st.binary(max_size=40).map(head.__add__)
    ),
    _mutated(GOLDEN_DB),
    _mutated(GOLDEN_DB_NO_ST),
)


@given(ANY_CIPHERED)
@settings(max_examples=10000, deadline=None)
def test_parse_ciphered_apdu_raises_only_input_error(data: bytes) -> None:
    try:
        apdu = parse_ciphered_apdu(data)
    except InputError:
        return
    assert apdu.to_bytes() == data


@given(ANY_GENERAL)
@settings(max_examples=10000, deadline=None)
def test_parse_general_ciphering_raises_only_input_error(data: bytes) -> None:
    try:
        apdu = parse_general_ciphering(data)
    except InputError:
        return
    assert apdu.to_bytes() == data


@settings(max_examples=2000, deadline=None)
@given(
    tag=st.sampled_from([*TAGS, GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING]),
    sc_byte=st.sampled_from([0x10, 0x20, 0x30, 0x31, 0x52, 0x72]),
    ic=st.integers(0, MAX_INVOCATION_COUNTER),
    payload=st.binary(max_size=300),
    with_title=st.booleans(),
)
def test_the_hot_path_frames_the_same_bytes(
    tag: int, sc_byte: int, ic: int, payload: bytes, with_title: bool
) -> None:
    from kms.dlms.ciphered_apdu import frame_ciphered_apdu

    if tag in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        title = ST if with_title else b""
        expected = GeneralCiphering(tag, title, sc(sc_byte), ic, payload).to_bytes()
        assert frame_ciphered_apdu(tag, title, sc_byte, ic, payload) == expected
    else:
        expected = CipheredApdu(tag, sc(sc_byte), ic, payload).to_bytes()
        assert frame_ciphered_apdu(tag, None, sc_byte, ic, payload) == expected
