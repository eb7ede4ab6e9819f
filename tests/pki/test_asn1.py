"""kms.pki._asn1: RFC 5280 time encodings at their boundaries, UTC handling, PEM armor."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from asn1crypto import x509

from kms.errors import InputError
from kms.pki import _asn1


@pytest.mark.parametrize(
    ("moment", "encoding", "der"),
    [
        (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), "utc_time", b"\x17\x0d491231235959Z"),
        (datetime(2050, 1, 1, tzinfo=UTC), "general_time", b"\x18\x0f20500101000000Z"),
        (datetime(1950, 1, 1, tzinfo=UTC), "utc_time", b"\x17\x0d500101000000Z"),
        (
            datetime(1949, 12, 31, 23, 59, 59, tzinfo=UTC),
            "general_time",
            b"\x18\x0f19491231235959Z",
        ),
        (
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
            "general_time",
            b"\x18\x0f99991231235959Z",
        ),
        # no fraction of a second, whatever the caller passes (RFC 5280 4.1.2.5.2)
        (
            datetime(2060, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
            "general_time",
            b"\x18\x0f20600101000000Z",
        ),
        # converted to UTC first: 01:00+02:00 is the previous day in UTC
        (
            datetime(2050, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            "utc_time",
            b"\x17\x0d491231230000Z",
        ),
    ],
)
def test_x509_time(moment: datetime, encoding: str, der: bytes) -> None:
    time = _asn1.x509_time(moment, "t")
    assert time.name == encoding
    assert time.dump() == der
    assert _asn1.time_encoding_is_canonical(x509.Time.load(der))


def test_time_encoding_check_spots_the_wrong_choice() -> None:
    assert not _asn1.time_encoding_is_canonical(x509.Time.load(b"\x18\x0f20300101000000Z"))


def test_naive_time_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="not_before must be timezone-aware"):
        _asn1.x509_time(datetime(2030, 1, 1), "not_before")
    with pytest.raises(TypeError, match="must be a datetime"):
        _asn1.utc("2030-01-01", "at")  # type: ignore[arg-type]


def test_armor_has_64_character_lines() -> None:
    der = bytes(range(256)) * 2
    pem = _asn1.armor("X509 CRL", der)
    lines = pem.splitlines()
    assert lines[0] == b"-----BEGIN X509 CRL-----"
    assert lines[-1] == b"-----END X509 CRL-----"
    assert {len(line) for line in lines[1:-2]} == {64}
    assert base64.b64decode(b"".join(lines[1:-1])) == der
    assert _asn1.pem_blocks(pem, ("X509 CRL",), "CRL", None) == [der]


def test_decode_der_names_what_and_where() -> None:
    with pytest.raises(InputError, match=r"^in\.der: CRL: not DER or PEM$"):
        _asn1.decode_der(x509.Certificate, b"\x04\x00", "CRL", "in.der")
    with pytest.raises(TypeError, match="CSR must be bytes"):
        _asn1.decode_der(x509.Certificate, "30", "CSR", None)  # type: ignore[arg-type]


def test_name_text() -> None:
    name = x509.Name.build(
        {"common_name": "KMS Root", "organization_name": "Utility", "country_name": "FI"}
    )
    assert _asn1.name_text(name) == "C=FI,O=Utility,CN=KMS Root"
    assert len(_asn1.name_text(x509.Name.build({"common_name": "x" * 300}))) == 160
