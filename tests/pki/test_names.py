"""kms.pki.names: system-title subjects, CA names, key identifiers (pyca oracle), serials."""

from __future__ import annotations

import pytest
from asn1crypto import core, x509
from cryptography import x509 as cx509
from hypothesis import given
from hypothesis import strategies as st

from kms.errors import CertificateProfileError
from kms.pki import names
from tests.pki.support import METER_ST, private_key, public_key_info


def test_system_title_name_is_upper_hex_cn() -> None:
    name = names.system_title_name(METER_ST)
    assert name.native == {"common_name": "4D4D4D0000BC614E"}
    # UTF8String, as RFC 5280 4.1.2.6 asks of new certificates and as Gurux writes it
    assert name.chosen[0][0]["value"].name == "utf8_string"
    assert cx509.Name.from_rfc4514_string("CN=4D4D4D0000BC614E").public_bytes() == name.dump()


@given(st.binary(min_size=8, max_size=8))
def test_system_title_round_trip(title: bytes) -> None:
    assert names.name_system_title(names.system_title_name(title)) == title


@pytest.mark.parametrize("title", [b"", bytes(7), bytes(9)])
def test_system_title_name_needs_8_bytes(title: bytes) -> None:
    with pytest.raises(ValueError, match="must be 8 bytes"):
        names.system_title_name(title)


def _name(*pairs: tuple[str, str]) -> x509.Name:
    rdns = [
        x509.RelativeDistinguishedName(
            [{"type": kind, "value": x509.DirectoryString(name="utf8_string", value=value)}]
        )
        for kind, value in pairs
    ]
    return x509.Name.load(x509.Name(name="", value=x509.RDNSequence(rdns)).dump())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (_name(("common_name", "4d4d4d0000bc614e")), "CN '4d4d4d0000bc614e' is not a system title"),
        (_name(("common_name", "4D4D4D0000BC614")), "CN '4D4D4D0000BC614' is not a system title"),
        (_name(("common_name", "4D4D4D0000BC614G")), "is not a system title"),
        (_name(("common_name", "Meter 12")), "CN 'Meter 12' is not a system title"),
        (_name(("organization_name", "Utility")), "subject has no CN"),
        (
            _name(("common_name", "4D4D4D0000BC614E"), ("common_name", "4D4D4D0000BC614E")),
            "subject has 2 CNs",
        ),
    ],
)
def test_name_system_title_refuses(name: x509.Name, message: str) -> None:
    with pytest.raises(CertificateProfileError, match=message):
        names.name_system_title(name)


def test_other_rdns_are_allowed() -> None:
    name = _name(("organization_name", "Utility"), ("common_name", "4D4D4D0000BC614E"))
    assert names.name_system_title(name) == METER_ST


def test_any_case_variant_is_for_csrs() -> None:
    lower = _name(("common_name", "4d4d4d0000bc614e"))
    assert names.name_system_title_any_case(lower) == METER_ST
    with pytest.raises(CertificateProfileError, match="16 hex characters"):
        names.name_system_title_any_case(_name(("common_name", "4d4d4d0000bc61")))


def test_ca_name() -> None:
    name = names.ca_name("KMS Root", "Utility")
    assert cx509.Name.from_rfc4514_string("CN=KMS Root,O=Utility").public_bytes() == name.dump()
    assert names.ca_name("KMS Root").native == {"common_name": "KMS Root"}
    for bad in ("", "  ", "x" * 65):
        with pytest.raises(ValueError, match="1 to 64 characters"):
            names.ca_name(bad)


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_key_identifier_is_rfc5280_method_1_as_pyca_computes_it(curve: str) -> None:
    key = private_key(curve, 21)
    expected = cx509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert names.key_identifier(public_key_info(key)) == expected


@given(st.binary(min_size=9, max_size=40))
def test_serial_number_properties(random_bytes: bytes) -> None:
    serial = names.serial_number_from(random_bytes)
    used = min(len(random_bytes), 19)
    assert serial > 0
    assert serial.bit_length() == 8 * used + 1 >= 73
    assert len(core.Integer(serial).contents) == used + 1 <= 20
    assert serial & ((1 << (8 * used)) - 1) == int.from_bytes(random_bytes[:used], "big")


def test_serial_number_of_zero_bytes_is_not_zero() -> None:
    assert names.serial_number_from(bytes(16)) == 1 << 128


@pytest.mark.parametrize("random_bytes", [b"", bytes(8)])
def test_serial_number_needs_9_bytes(random_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="at least 9 random bytes"):
        names.serial_number_from(random_bytes)
