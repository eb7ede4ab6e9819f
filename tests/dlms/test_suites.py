"""kms.dlms.suites: suite ids, key lengths and parsing of outside values."""

from __future__ import annotations

import pytest

from kms.dlms.suites import SecuritySuite
from kms.errors import InputError, KMSUsageError


def test_ids_are_the_green_book_ones() -> None:
    assert [int(s) for s in SecuritySuite] == [0, 1, 2]
    assert SecuritySuite(0) is SecuritySuite.AES_GCM_128
    assert SecuritySuite(1) is SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256
    assert SecuritySuite(2) is SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384


@pytest.mark.parametrize(("suite", "length"), [(0, 16), (1, 16), (2, 32)])
def test_key_length(suite: int, length: int) -> None:
    assert SecuritySuite(suite).key_length == length


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, SecuritySuite.AES_GCM_128),
        (2, SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384),
        ("1", SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256),
        (" 2 ", SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384),
        ("AES_GCM_128", SecuritySuite.AES_GCM_128),
        ("ecdh-ecdsa-aes-gcm-128-sha-256", SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256),
        (SecuritySuite.AES_GCM_128, SecuritySuite.AES_GCM_128),
    ],
)
def test_parse(value: int | str, expected: SecuritySuite) -> None:
    assert SecuritySuite.parse(value) is expected


def test_parse_error_message_names_the_value_and_the_field() -> None:
    with pytest.raises(InputError) as info:
        SecuritySuite.parse(3)
    assert str(info.value) == (
        "field 'security_suite': unknown security suite 3; expected 0, 1 or 2"
    )
    assert info.value.field == "security_suite"
    assert isinstance(info.value, KMSUsageError)


@pytest.mark.parametrize(
    "value",
    [-1, 3, 15, 256, "3", "", "  ", "0x1", "1.0", "suite0", "٢", "0_1", "9" * 5000, True],
)
def test_parse_rejects(value: object) -> None:
    with pytest.raises(InputError, match="unknown security suite") as info:
        SecuritySuite.parse(value)  # type: ignore[arg-type]
    assert info.value.field == "security_suite"
    assert len(str(info.value)) < 120


def test_parse_rejects_other_types() -> None:
    with pytest.raises(InputError, match="unknown security suite"):
        SecuritySuite.parse(1.0)  # type: ignore[arg-type]
