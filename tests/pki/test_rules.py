"""kms.pki.rules: certificate types and their CLI words, suites to curves, Validity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kms.dlms.security_setup import CertificateType as WireCertificateType
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError
from kms.pki.rules import (
    KEY_USAGE,
    CertificateType,
    Validity,
    curve_for_suite,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("signing", CertificateType.DIGITAL_SIGNATURE),
        ("key-agreement", CertificateType.KEY_AGREEMENT),
        ("tls", CertificateType.TLS),
        ("TLS", CertificateType.TLS),
        (" Signing ", CertificateType.DIGITAL_SIGNATURE),
        ("DIGITAL_SIGNATURE", CertificateType.DIGITAL_SIGNATURE),
        ("digital-signature", CertificateType.DIGITAL_SIGNATURE),
        ("key_agreement", CertificateType.KEY_AGREEMENT),
        ("0", CertificateType.DIGITAL_SIGNATURE),
        ("1", CertificateType.KEY_AGREEMENT),
        ("2", CertificateType.TLS),
    ],
)
def test_parse(text: str, expected: CertificateType) -> None:
    assert CertificateType.parse(text) is expected


@pytest.mark.parametrize("text", ["3", "other", "", "sign", "key agreement", "02x", "9" * 50])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(InputError, match="unknown certificate type") as caught:
        CertificateType.parse(text)
    assert caught.value.field == "certificate_type"
    assert "expected signing, key-agreement or tls" in caught.value.message


def test_cli_names_round_trip_and_match_the_security_setup_enum() -> None:
    assert [t.cli_name for t in CertificateType] == ["signing", "key-agreement", "tls"]
    assert [int(t) for t in CertificateType] == [0, 1, 2]  # notes section 4, methods 4/5
    assert all(CertificateType.parse(t.cli_name) is t for t in CertificateType)
    wire = {t.name: int(t) for t in WireCertificateType}
    assert all(wire[t.name] == int(t) for t in CertificateType)  # the issuable subset
    assert KEY_USAGE[CertificateType.TLS] == (
        KEY_USAGE[CertificateType.DIGITAL_SIGNATURE] | KEY_USAGE[CertificateType.KEY_AGREEMENT]
    )


def test_curve_for_suite() -> None:
    assert curve_for_suite(SecuritySuite(1)) == "P-256"
    assert curve_for_suite(SecuritySuite(2)) == "P-384"
    with pytest.raises(InputError, match="suite 0 has no public-key operations"):
        curve_for_suite(SecuritySuite(0))


def test_validity_normalises_to_whole_utc_seconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    validity = Validity(
        datetime(2030, 1, 1, 2, 0, 0, 999_999, tzinfo=plus_two),
        datetime(2031, 1, 1, tzinfo=UTC),
    )
    assert validity.not_before == datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert validity.not_before.tzinfo is UTC


@pytest.mark.parametrize(
    ("not_before", "not_after", "message"),
    [
        (datetime(2030, 1, 1), datetime(2031, 1, 1, tzinfo=UTC), "must be timezone-aware"),
        (datetime(2031, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC), "is not after"),
        (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC), "is not after"),
        # equal once the fraction X.509 cannot carry is dropped
        (
            datetime(2030, 1, 1, tzinfo=UTC),
            datetime(2030, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
            "is not after",
        ),
    ],
)
def test_validity_refuses(not_before: datetime, not_after: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Validity(not_before, not_after)
