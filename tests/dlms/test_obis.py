"""kms.dlms.obis: logical names and the manifest's setups column."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms.dlms.obis import (
    LOGICAL_NAME_LENGTH,
    format_logical_name,
    is_security_setup_logical_name,
    parse_logical_name,
    parse_setups_field,
    security_setup_logical_name,
)
from kms.errors import InputError

MANAGEMENT_SETUP = bytes.fromhex("00002B0000FF")


@pytest.mark.parametrize(
    "text", ["0.0.43.0.0.255", "0-0:43.0.0.255", "00002B0000FF", "00002b0000ff", "000.0.43.0.0.255"]
)
def test_parse_logical_name_forms(text: str) -> None:
    assert parse_logical_name(text) == MANAGEMENT_SETUP


def test_format_logical_name() -> None:
    assert format_logical_name(MANAGEMENT_SETUP) == "0.0.43.0.0.255"
    assert format_logical_name(bytes.fromhex("0100010800FF")) == "1.0.1.8.0.255"


@given(st.binary(min_size=LOGICAL_NAME_LENGTH, max_size=LOGICAL_NAME_LENGTH))
def test_logical_name_round_trip(ln: bytes) -> None:
    assert parse_logical_name(format_logical_name(ln)) == ln
    assert parse_logical_name(ln.hex()) == ln


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0.43.0.256.255", "logical name group E is 256 at offset 9; expected 0..255"),
        ("999.0.43.0.0.255", "logical name group A is 999 at offset 0; expected 0..255"),
        ("0.0.43.0.0", "is not 'a.b.c.d.e.f' (6 groups 0..255)"),
        ("0.0.43.0.0.255.1", "is not 'a.b.c.d.e.f'"),
        ("0.0.43.0.0.2555", "is not 'a.b.c.d.e.f'"),
        ("0.0.43.0.-1.255", "is not 'a.b.c.d.e.f'"),
        (" 0.0.43.0.0.255", "is not 'a.b.c.d.e.f'"),
        ("00002B0000F", "is not 'a.b.c.d.e.f'"),
        ("00002B0000FG", "is not 'a.b.c.d.e.f'"),
        ("", "logical name '' is not"),
    ],
)
def test_parse_logical_name_rejects(text: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        parse_logical_name(text)
    assert info.value.field == "logical_name"


def test_parse_logical_name_field_is_named_by_caller() -> None:
    with pytest.raises(InputError) as info:
        parse_logical_name("x", field="instance")
    assert info.value.field == "instance"


def test_format_logical_name_wrong_length_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="logical name must be 6 bytes, got 5"):
        format_logical_name(bytes(5))


@pytest.mark.parametrize("instance", [0, 1, 7, 255])
def test_security_setup_logical_name(instance: int) -> None:
    ln = security_setup_logical_name(instance)
    assert ln == bytes([0, 0, 43, 0, instance, 255])
    assert is_security_setup_logical_name(ln)


def test_security_setup_logical_name_of_management_setup() -> None:
    assert security_setup_logical_name(0) == MANAGEMENT_SETUP


@pytest.mark.parametrize("instance", [-1, 256])
def test_security_setup_logical_name_range(instance: int) -> None:
    with pytest.raises(ValueError, match=re.escape("instance must be 0..255")):
        security_setup_logical_name(instance)


@pytest.mark.parametrize("instance", ["0", 1.0, True])
def test_security_setup_logical_name_type(instance: object) -> None:
    with pytest.raises(TypeError):
        security_setup_logical_name(instance)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ln", ["0100010800FF", "00002B0100FF", "00002B0000FE", "01002B0000FF", "00002A0000FF"]
)
def test_not_a_security_setup(ln: str) -> None:
    assert not is_security_setup_logical_name(bytes.fromhex(ln))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (0,)),
        ("  ", (0,)),
        ("0", (0,)),
        ("0;1", (0, 1)),
        ("3;1;2", (3, 1, 2)),
        (" 0 ; 1 ", (0, 1)),
        ("0.0.43.0.1.255", (1,)),
        ("0;0.0.43.0.1.255;0-0:43.0.2.255;00002B0003FF", (0, 1, 2, 3)),
        ("255", (255,)),
        ("007", (7,)),
    ],
)
def test_parse_setups_field(text: str, expected: tuple[int, ...]) -> None:
    assert parse_setups_field(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0;0", "item 2 at offset 2: security setup 0 is listed twice"),
        ("1;0.0.43.0.1.255", "item 2 at offset 2: security setup 1 is listed twice"),
        ("0;;1", "item 2 at offset 2 is empty"),
        ("0;", "item 2 at offset 2 is empty"),
        (";0", "item 1 at offset 0 is empty"),
        ("256", "item 1 at offset 0: security setup instance 256 is out of range 0..255"),
        ("0; -1", "item 2 at offset 3: '-1' is neither an instance number 0..255"),
        ("1000", "item 1 at offset 0: '1000' is neither an instance number"),
        ("one", "'one' is neither an instance number 0..255 nor a security setup logical name"),
        ("0,1", "'0,1' is neither"),
        ("1.0.1.8.0.255", "logical name 1.0.1.8.0.255 is not a security setup (0.0.43.0.e.255)"),
        ("0;0.0.43.0.300.255", "item 2 at offset 2: logical name group E is 300 at offset 11"),
    ],
)
def test_parse_setups_field_rejects(text: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as info:
        parse_setups_field(text)
    assert info.value.field == "setups"
    assert str(info.value).startswith("field 'setups': ")


@given(st.lists(st.integers(0, 255), min_size=1, max_size=20, unique=True))
def test_parse_setups_field_round_trip(instances: list[int]) -> None:
    assert parse_setups_field(";".join(map(str, instances))) == tuple(instances)
    names = ";".join(format_logical_name(security_setup_logical_name(e)) for e in instances)
    assert parse_setups_field(names) == tuple(instances)


@given(st.text(max_size=40))
def test_parse_setups_field_raises_only_input_error(text: str) -> None:
    try:
        result = parse_setups_field(text)
    except InputError:
        return
    assert result
    assert all(0 <= e <= 255 for e in result)
    assert len(set(result)) == len(result)
