"""kms.dlms.axdr: A-XDR lengths, COSEM data helpers and the strict Reader."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.axdr import (
    MAX_LENGTH,
    DataType,
    Reader,
    decode_length,
    encode_array,
    encode_enum,
    encode_length,
    encode_octet_string,
    encode_structure,
)
from kms.errors import InputError

# Boundaries of each form, as gurux-dlms setObjectCount writes them (notes section 2.4).
LENGTH_VECTORS = [
    (0, "00"),
    (0x7F, "7f"),
    (0x80, "8180"),
    (0xFF, "81ff"),
    (0x100, "820100"),
    (0xFFFF, "82ffff"),
    (0x10000, "8400010000"),
    (MAX_LENGTH, "84ffffffff"),
]


@pytest.mark.parametrize(("n", "encoded"), LENGTH_VECTORS)
def test_encode_length(n: int, encoded: str) -> None:
    assert encode_length(n) == bytes.fromhex(encoded)


@pytest.mark.parametrize(("n", "encoded"), LENGTH_VECTORS)
def test_decode_length(n: int, encoded: str) -> None:
    data = b"\xaa" + bytes.fromhex(encoded) + b"\xbb"
    assert decode_length(data, 1) == (n, 1 + len(encoded) // 2)


@pytest.mark.parametrize("n", [-1, MAX_LENGTH + 1])
def test_encode_length_range(n: int) -> None:
    with pytest.raises(ValueError, match="length must be"):
        encode_length(n)


@pytest.mark.parametrize("n", [1.0, "1", True, None])
def test_encode_length_type(n: object) -> None:
    with pytest.raises(TypeError):
        encode_length(n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("encoded", "offset", "message"),
    [
        ("", 0, "field 'length': truncated: need 1 byte, 0 left at offset 0"),
        ("0081", 1, "field 'length': truncated: need 1 byte, 0 left at offset 2"),
        ("8201", 0, "truncated: need 2 bytes, 1 left at offset 1"),
        ("84000100", 0, "truncated: need 4 bytes, 3 left at offset 1"),
        ("80", 0, "bad A-XDR length form 0x80 at offset 0"),
        ("00830000ff", 1, "bad A-XDR length form 0x83 at offset 1"),
        ("85000000000001", 0, "bad A-XDR length form 0x85 at offset 0"),
        ("ff", 0, "bad A-XDR length form 0xff at offset 0"),
        ("817f", 0, "non-minimal A-XDR length encoding 0x81 for 127 at offset 0"),
        ("820005", 0, "non-minimal A-XDR length encoding 0x82 for 5 at offset 0"),
        ("8400000000", 0, "non-minimal A-XDR length encoding 0x84 for 0 at offset 0"),
        ("840000ffff", 0, "non-minimal A-XDR length encoding 0x84 for 65535 at offset 0"),
    ],
)
def test_decode_length_rejects(encoded: str, offset: int, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        decode_length(bytes.fromhex(encoded), offset)
    assert info.value.field == "length"


def test_decode_length_offset_outside_data_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match=re.escape("offset 3 is outside 0..2")):
        decode_length(b"\x00\x00", 3)


@given(st.integers(0, MAX_LENGTH), st.binary(max_size=4), st.binary(max_size=4))
def test_length_round_trip(n: int, prefix: bytes, suffix: bytes) -> None:
    encoded = encode_length(n)
    assert decode_length(prefix + encoded + suffix, len(prefix)) == (
        n,
        len(prefix) + len(encoded),
    )


@settings(max_examples=10_000, deadline=None)
@given(st.binary(min_size=1, max_size=6))
def test_decoded_lengths_re_encode_to_the_same_bytes(data: bytes) -> None:
    """Strictness: every accepted encoding is the canonical one."""
    try:
        value, end = decode_length(data, 0)
    except InputError:
        return
    assert encode_length(value) == data[:end]


def test_data_helpers() -> None:
    assert encode_octet_string(b"") == bytes.fromhex("0900")
    assert encode_octet_string(bytes(24)) == bytes.fromhex("0918") + bytes(24)
    assert encode_octet_string(bytes(200))[:3] == bytes.fromhex("0981c8")
    assert encode_enum(3) == bytes.fromhex("1603")
    assert encode_structure(encode_enum(0), encode_octet_string(b"\x01")) == bytes.fromhex(
        "0202 1600 090101"
    )
    assert encode_array([]) == bytes.fromhex("0100")
    assert encode_array([encode_enum(1), encode_enum(2)]) == bytes.fromhex("0102 1601 1602")
    assert [int(t) for t in DataType] == [0x01, 0x02, 0x09, 0x16]


@pytest.mark.parametrize("value", [-1, 256])
def test_encode_enum_range(value: int) -> None:
    with pytest.raises(ValueError, match=re.escape("enum value must be 0..255")):
        encode_enum(value)


def test_encode_octet_string_type() -> None:
    with pytest.raises(TypeError):
        encode_octet_string("00")  # type: ignore[arg-type]


class TestReader:
    def test_reads_in_order(self) -> None:
        reader = Reader(bytes.fromhex("c3 0040 1603 0903abcdef 01"))
        assert reader.u8("tag") == 0xC3
        assert reader.u16("class_id") == 64
        assert reader.enum("policy") == 3
        assert reader.octet_string("value") == bytes.fromhex("abcdef")
        assert reader.remaining == 1
        reader.expect_tag(DataType.ARRAY, "array")
        assert reader.offset == 11
        reader.done()

    def test_take_never_reads_past_the_end(self) -> None:
        reader = Reader(b"\x01\x02\x03", source="test apdu")
        assert reader.take(2, "head") == b"\x01\x02"
        with pytest.raises(InputError) as info:
            reader.take(2, "tail")
        assert str(info.value) == (
            "test apdu, field 'tail': truncated: need 2 bytes, 1 left at offset 2"
        )
        assert reader.offset == 2
        assert reader.take(1, "tail") == b"\x03"
        reader.done()

    def test_done_rejects_trailing_bytes(self) -> None:
        reader = Reader(b"\x00\x01\x02")
        reader.u8()
        with pytest.raises(InputError, match="2 trailing bytes at offset 1") as info:
            reader.done()
        assert info.value.field == "end"

    def test_expect_tag_names_both_tags_and_the_field(self) -> None:
        reader = Reader(b"\x00\x0a")
        reader.u8()
        with pytest.raises(InputError) as info:
            reader.expect_tag(DataType.OCTET_STRING, "key_wrapped")
        assert str(info.value) == (
            "field 'key_wrapped': expected tag 0x09 (octet-string), got 0x0a at offset 1"
        )

    def test_expect_byte(self) -> None:
        with pytest.raises(InputError, match=re.escape("expected 0x01 (present), got 0x00")):
            Reader(b"\x00").expect_byte(1, "flag", "present")

    def test_octet_string_longer_than_the_data(self) -> None:
        with pytest.raises(InputError, match="truncated: need 200 bytes, 2 left at offset 3"):
            Reader(bytes.fromhex("0981c80000")).octet_string("value")

    def test_enum_wrong_tag(self) -> None:
        with pytest.raises(InputError, match=re.escape("expected tag 0x16 (enum), got 0x09")):
            Reader(bytes.fromhex("0903")).enum("key_id")

    def test_negative_take_is_a_caller_bug(self) -> None:
        with pytest.raises(ValueError, match="cannot take -1 bytes"):
            Reader(b"").take(-1)

    def test_rejects_text(self) -> None:
        with pytest.raises(TypeError):
            Reader("c3")  # type: ignore[arg-type]
