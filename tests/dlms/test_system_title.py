"""kms.dlms.system_title: strict text form, canonical output, FLAG ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.dlms.system_title import (
    SYSTEM_TITLE_LENGTH,
    format_system_title,
    manufacturer_id,
    parse_system_title,
)
from kms.errors import InputError

GREEN_BOOK_ST = bytes.fromhex("4D4D4D0000BC614E")  # notes section 8.1


def test_parse_and_format_green_book_title() -> None:
    assert parse_system_title("4D4D4D0000BC614E") == GREEN_BOOK_ST
    assert parse_system_title("4d4d4d0000bc614e") == GREEN_BOOK_ST
    assert format_system_title(GREEN_BOOK_ST) == "4D4D4D0000BC614E"


@given(st.binary(min_size=SYSTEM_TITLE_LENGTH, max_size=SYSTEM_TITLE_LENGTH))
def test_round_trip(title: bytes) -> None:
    text = format_system_title(title)
    assert text == text.upper()
    assert len(text) == 16
    assert parse_system_title(text) == title
    assert parse_system_title(text.lower()) == title


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4D4D4D0000BC61", "system title must be 8 bytes (16 hex characters), got 7 bytes"),
        ("4D4D4D0000BC614E00", "must be 8 bytes (16 hex characters), got 9 bytes"),
        ("", "must be 8 bytes (16 hex characters), got 0 bytes"),
        ("4D4D4D0000BC614", "must be 8 bytes (16 hex characters), got 15 hex characters"),
        ("4D4D4D0000BC614G", "system title is not hexadecimal: 'G' at offset 15"),
        ("4D4D4D 0000BC614E", "not hexadecimal: whitespace at offset 6"),
        (" 4D4D4D0000BC614E", "not hexadecimal: whitespace at offset 0"),
        ("4D4D4D0000BC614E\n", "not hexadecimal: whitespace at offset 16"),
        ("0x4D4D4D0000BC61", "not hexadecimal: 'x' at offset 1"),
        ("4D:4D:4D:00:00:BC:61:4E", "not hexadecimal: ':' at offset 2"),
        ("\uff14D4D4D0000BC614E", "not hexadecimal: '\uff14' at offset 0"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        parse_system_title(text)
    assert info.value.field == "system_title"
    assert str(info.value).startswith("field 'system_title': ")


def test_parse_rejects_bytes_as_a_caller_bug() -> None:
    with pytest.raises(TypeError):
        parse_system_title(GREEN_BOOK_ST)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        (GREEN_BOOK_ST, "MMM"),
        (bytes.fromhex("4B464D0000000001"), "KFM"),
        (bytes.fromhex("6D6D6D0000000001"), None),  # lower case is not a FLAG id
        (bytes.fromhex("4D4D300000000001"), None),  # a digit
        (bytes.fromhex("0000000000000001"), None),
        (bytes.fromhex("FFFFFF0000000001"), None),
    ],
)
def test_manufacturer_id(title: bytes, expected: str | None) -> None:
    assert manufacturer_id(title) == expected


@pytest.mark.parametrize("func", [format_system_title, manufacturer_id])
@pytest.mark.parametrize("length", [0, 7, 9])
def test_wrong_length_is_a_caller_bug(func: object, length: int) -> None:
    with pytest.raises(ValueError, match="system title must be 8 bytes"):
        func(bytes(length))  # type: ignore[operator]


def test_format_rejects_text() -> None:
    with pytest.raises(TypeError):
        format_system_title("4D4D4D0000BC614E")  # type: ignore[arg-type]
