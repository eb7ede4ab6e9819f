"""kms.dlms.security_control: every SC byte, the security header, dlms-cosem as an oracle.

dlms-cosem is imported here only: the codec under test must not depend on it.
"""

from __future__ import annotations

import pytest
from dlms_cosem.security import SecurityControlField
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.security_control import (
    MAX_INVOCATION_COUNTER,
    SECURITY_HEADER_LENGTH,
    SecurityControl,
    check_invocation_counter,
    parse_security_header,
    security_header,
)
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError

VALID_BYTES = [b for b in range(256) if b & 0x0F <= 2]
RESERVED_BYTES = [b for b in range(256) if b & 0x0F > 2]


def sc(byte: int) -> SecurityControl:
    return SecurityControl.from_byte(byte)


# --- the byte ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("byte", "fields"),
    [
        (0x10, (False, False, False, True, SecuritySuite.AES_GCM_128)),
        (0x20, (False, False, True, False, SecuritySuite.AES_GCM_128)),
        (0x30, (False, False, True, True, SecuritySuite.AES_GCM_128)),
        (0x31, (False, False, True, True, SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256)),
        (0x32, (False, False, True, True, SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384)),
        (0x72, (False, True, True, True, SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384)),
        (0x80, (True, False, False, False, SecuritySuite.AES_GCM_128)),
        (0xF2, (True, True, True, True, SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384)),
    ],
)
def test_examples_of_notes_section_2_1(
    byte: int, fields: tuple[bool, bool, bool, bool, SecuritySuite]
) -> None:
    control = sc(byte)
    assert control == SecurityControl(*fields)
    assert type(control.suite) is SecuritySuite
    assert control.to_byte() == byte


def test_every_valid_byte_round_trips() -> None:
    for byte in VALID_BYTES:
        assert sc(byte).to_byte() == byte
    assert len(VALID_BYTES) == 16 * 3


@pytest.mark.parametrize("byte", RESERVED_BYTES)
def test_reserved_suites_are_input_errors(byte: int) -> None:
    with pytest.raises(InputError) as caught:
        SecurityControl.from_byte(byte, field_offset=7)
    assert caught.value.field == "security_control"
    assert f"0x{byte:02x}" in str(caught.value)
    assert "offset 7" in str(caught.value)
    assert f"reserved security suite {byte & 0x0F}" in str(caught.value)


def test_suite_uses_four_bits_not_two() -> None:
    # Gurux reads sc & 0x03, which would make 0x35 a suite-1 byte.
    with pytest.raises(InputError, match="reserved security suite 5"):
        sc(0x35)


@pytest.mark.parametrize("bad", [-1, 256, 1000])
def test_from_byte_out_of_range_is_a_caller_bug(bad: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        SecurityControl.from_byte(bad)


@pytest.mark.parametrize("bad", [True, b"\x30", 0x30 * 1.0, "0x30"])
def test_from_byte_wrong_type(bad: object) -> None:
    with pytest.raises(TypeError, match="must be int"):
        SecurityControl.from_byte(bad)  # type: ignore[arg-type]


def test_constructor_converts_int_suite() -> None:
    control = SecurityControl(False, False, True, True, 2)  # type: ignore[arg-type]
    assert control.suite is SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384
    assert control.to_byte() == 0x32


@pytest.mark.parametrize("suite", [3, 15, -1])
def test_constructor_rejects_reserved_suite(suite: int) -> None:
    with pytest.raises(ValueError, match="suite must be 0, 1 or 2"):
        SecurityControl(False, False, True, True, suite)  # type: ignore[arg-type]


@pytest.mark.parametrize("position", range(4))
def test_constructor_rejects_non_bool_flags(position: int) -> None:
    flags: list[object] = [False] * 4
    flags[position] = 1
    with pytest.raises(TypeError, match="must be bool"):
        SecurityControl(*flags, SecuritySuite.AES_GCM_128)  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", [True, "0", None])
def test_constructor_rejects_non_int_suite(suite: object) -> None:
    with pytest.raises(TypeError, match="suite must be a SecuritySuite"):
        SecurityControl(False, False, False, False, suite)  # type: ignore[arg-type]


def test_frozen() -> None:
    control = sc(0x30)
    with pytest.raises(AttributeError):
        control.encryption = False  # type: ignore[misc]


# --- oracle: dlms-cosem's SecurityControlField ------------------------------------------------


@pytest.mark.parametrize("byte", VALID_BYTES)
def test_agrees_with_dlms_cosem(byte: int) -> None:
    theirs = SecurityControlField.from_bytes(bytes([byte]))
    ours = sc(byte)
    assert (
        ours.compression,
        ours.broadcast,
        ours.encryption,
        ours.authentication,
        int(ours.suite),
    ) == (
        theirs.compressed,
        theirs.broadcast_key,
        theirs.encrypted,
        theirs.authenticated,
        theirs.security_suite,
    )
    assert theirs.to_bytes() == bytes([ours.to_byte()])


# --- the security header ----------------------------------------------------------------------


def test_security_header_golden() -> None:
    # Notes section 8.1: SC 30, IC 01234567.
    assert security_header(sc(0x30), 0x01234567) == bytes.fromhex("3001234567")
    assert parse_security_header(bytes.fromhex("3001234567")) == (sc(0x30), 0x01234567)
    assert SECURITY_HEADER_LENGTH == 5


@pytest.mark.parametrize("ic", [0, 1, MAX_INVOCATION_COUNTER])
def test_security_header_ic_bounds(ic: int) -> None:
    header = security_header(sc(0x10), ic)
    assert len(header) == SECURITY_HEADER_LENGTH
    assert parse_security_header(header) == (sc(0x10), ic)


@pytest.mark.parametrize("ic", [-1, MAX_INVOCATION_COUNTER + 1, 2**64])
def test_security_header_ic_out_of_range(ic: int) -> None:
    with pytest.raises(ValueError, match=r"invocation_counter must be 0\.\.0xffffffff"):
        security_header(sc(0x30), ic)


@pytest.mark.parametrize("ic", [True, 1.0, "1"])
def test_security_header_ic_wrong_type(ic: object) -> None:
    with pytest.raises(TypeError, match="invocation_counter must be int"):
        security_header(sc(0x30), ic)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="invocation_counter must be int"):
        check_invocation_counter(ic)  # type: ignore[arg-type]


def test_security_header_wants_a_security_control() -> None:
    with pytest.raises(TypeError, match="security_control must be SecurityControl"):
        security_header(0x30, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hex_input", "field", "offset"),
    [
        ("", "security_control", 0),
        ("30", "invocation_counter", 1),
        ("30012345", "invocation_counter", 1),
        ("300123456700", "end", 5),
        ("3301234567", "security_control", 0),
        ("FF01234567", "security_control", 0),
    ],
)
def test_parse_security_header_errors(hex_input: str, field: str, offset: int) -> None:
    with pytest.raises(InputError) as caught:
        parse_security_header(bytes.fromhex(hex_input))
    assert caught.value.field == field
    assert f"field {field!r}" in str(caught.value)
    assert f"at offset {offset}" in str(caught.value)
    assert caught.value.source == "security header"


# --- properties -------------------------------------------------------------------------------


@given(st.sampled_from(VALID_BYTES), st.integers(0, MAX_INVOCATION_COUNTER))
@settings(max_examples=10000, deadline=None)
def test_header_round_trip(byte: int, ic: int) -> None:
    control = SecurityControl.from_byte(byte)
    rebuilt = SecurityControl(
        control.compression,
        control.broadcast,
        control.encryption,
        control.authentication,
        control.suite,
    )
    assert rebuilt == control
    assert rebuilt.to_byte() == byte
    header = security_header(control, ic)
    assert header == bytes([byte]) + ic.to_bytes(4, "big")
    assert parse_security_header(header) == (control, ic)


@given(st.binary(max_size=12))
@settings(max_examples=10000, deadline=None)
def test_parse_security_header_raises_only_input_error(data: bytes) -> None:
    try:
        control, ic = parse_security_header(data)
    except InputError:
        return
    assert security_header(control, ic) == data
