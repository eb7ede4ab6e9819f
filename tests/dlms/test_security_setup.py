"""kms.dlms.security_setup (methods 4..8) and kms.dlms.action_request: golden bytes, round trips,
strict parsing. gurux-dlms's bytes for the same requests are compared in
tests/interop/test_security_setup_interop.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms import key_transfer
from kms.dlms.action_request import (
    ACTION_REQUEST,
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    DEFAULT_SECURITY_SETUP,
    security_setup_action_request,
)
from kms.dlms.obis import security_setup_logical_name
from kms.dlms.security_setup import (
    METHOD_EXPORT_CERTIFICATE,
    METHOD_GENERATE_CERTIFICATE_REQUEST,
    METHOD_GENERATE_KEY_PAIR,
    METHOD_IMPORT_CERTIFICATE,
    METHOD_REMOVE_CERTIFICATE,
    CertificateEntity,
    CertificateIdentificationByEntity,
    CertificateIdentificationBySerial,
    CertificateType,
    SecuritySetupRequest,
    export_certificate_request,
    generate_certificate_request_request,
    generate_key_pair_request,
    import_certificate_request,
    parse_export_certificate_request,
    parse_generate_certificate_request_request,
    parse_generate_key_pair_request,
    parse_import_certificate_request,
    parse_remove_certificate_request,
    remove_certificate_request,
)
from kms.errors import InputError
from tests.dlms.mutations import mutated

HEADER = "C3 01 C1 0040 00002B0000FF"
ST = bytes.fromhex("4D4D4D0000BC614E")
# A DER SEQUENCE of 300 content bytes: the framing of a real certificate (304 bytes in all).
CERTIFICATE = bytes.fromhex("3082012C") + bytes(range(256)) + bytes(44)
# DER INTEGER 0x1234 and the DER Name CN=KMS Issuing CA, as Gurux fills identification by serial.
SERIAL = bytes.fromhex("02021234")
ISSUER = bytes.fromhex("30193117301506035504030C0E4B4D532049737375696E67204341")
BY_ENTITY = CertificateIdentificationByEntity(
    CertificateEntity.SERVER, CertificateType.KEY_AGREEMENT, ST
)
BY_SERIAL = CertificateIdentificationBySerial(SERIAL, ISSUER)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


GOLDEN: list[tuple[str, bytes, bytes]] = [
    ("generate_key_pair", generate_key_pair_request(1), _hex(HEADER + "04 01 1601")),
    ("generate_csr", generate_certificate_request_request(0), _hex(HEADER + "05 01 1600")),
    (
        "import_certificate",
        import_certificate_request(CERTIFICATE),
        _hex(HEADER + "06 01 09 820130") + CERTIFICATE,
    ),
    (
        "export_by_entity",
        export_certificate_request(BY_ENTITY),
        _hex(HEADER + "07 01 0202 1600 0203 1600 1601 0908 4D4D4D0000BC614E"),
    ),
    (
        "export_by_serial",
        export_certificate_request(BY_SERIAL),
        _hex(HEADER + "07 01 0202 1601 0202 0904 02021234 091B") + ISSUER,
    ),
    (
        "remove_by_entity",
        remove_certificate_request(
            CertificateIdentificationByEntity(2, 0, ST)  # type: ignore[arg-type]
        ),
        _hex(HEADER + "08 01 0202 1600 0203 1602 1600 0908 4D4D4D0000BC614E"),
    ),
    (
        "remove_by_serial",
        remove_certificate_request(BY_SERIAL),
        _hex(HEADER + "08 01 0202 1601 0202 0904 02021234 091B") + ISSUER,
    ),
]
PARSERS: dict[int, Callable[[bytes], SecuritySetupRequest]] = {
    METHOD_GENERATE_KEY_PAIR: parse_generate_key_pair_request,
    METHOD_GENERATE_CERTIFICATE_REQUEST: parse_generate_certificate_request_request,
    METHOD_IMPORT_CERTIFICATE: parse_import_certificate_request,
    METHOD_EXPORT_CERTIFICATE: parse_export_certificate_request,
    METHOD_REMOVE_CERTIFICATE: parse_remove_certificate_request,
}


@pytest.mark.parametrize(("name", "ours", "golden"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_bytes_and_round_trip(name: str, ours: bytes, golden: bytes) -> None:
    assert ours == golden
    request = PARSERS[golden[11]](golden)
    assert request.to_bytes() == golden
    assert request.method_id == golden[11]
    assert request.invoke_id_and_priority == DEFAULT_INVOKE_ID_AND_PRIORITY
    assert request.logical_name == DEFAULT_SECURITY_SETUP


def test_parsed_parameters() -> None:
    assert parse_generate_key_pair_request(GOLDEN[0][2]).parameter is CertificateType.KEY_AGREEMENT
    assert parse_import_certificate_request(GOLDEN[2][2]).parameter == CERTIFICATE
    assert parse_export_certificate_request(GOLDEN[3][2]).parameter == BY_ENTITY
    assert parse_remove_certificate_request(GOLDEN[6][2]).parameter == BY_SERIAL
    assert parse_export_certificate_request(GOLDEN[3][2]).method_name == "export_certificate"


def test_keywords_and_short_certificate() -> None:
    ln = security_setup_logical_name(2)
    short = bytes.fromhex("3003020101")
    apdu = import_certificate_request(short, invoke=0x47, logical_name=ln)
    assert apdu == _hex("C3 01 47 0040 00002B0002FF 06 01 09 05 3003020101")
    assert parse_import_certificate_request(apdu) == SecuritySetupRequest(
        0x47, ln, METHOD_IMPORT_CERTIFICATE, short
    )
    big = bytes.fromhex("30820100") + bytes(256)
    assert import_certificate_request(big)[13:17] == _hex("09 820104")


def test_key_transfer_shares_the_envelope() -> None:
    """key_transfer's public names still work and its constants are the shared ones."""
    assert key_transfer.ACTION_REQUEST == ACTION_REQUEST == 0xC3
    assert key_transfer.DEFAULT_INVOKE_ID_AND_PRIORITY == DEFAULT_INVOKE_ID_AND_PRIORITY
    assert security_setup_action_request(0xC1, DEFAULT_SECURITY_SETUP, 1, b"\x16\x03") == (
        key_transfer.security_activate_request(DEFAULT_SECURITY_SETUP, 3)
    )


# --- builder: caller bugs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: generate_key_pair_request(3), ValueError, "must be 0..2, got 3 (other)"),
        (lambda: generate_key_pair_request(4), ValueError, "certificate_type must be 0"),
        (lambda: generate_certificate_request_request(True), TypeError, "CertificateType"),
        (lambda: import_certificate_request(b""), ValueError, "certificate is empty"),
        (lambda: import_certificate_request(b"\x31\x00"), ValueError, "tag 0x30), got tag 0x31"),
        (lambda: import_certificate_request(b"\x30\x02\x00"), ValueError, "says 4 bytes"),
        (lambda: import_certificate_request(b"\x30\x81\x05" + bytes(5)), ValueError, "not minimal"),
        (lambda: import_certificate_request(b"\x30\x80"), ValueError, "bad or truncated length"),
        (lambda: import_certificate_request("30"), TypeError, "certificate_der must be bytes"),
        (lambda: export_certificate_request(CERTIFICATE), TypeError, "CertificateIdentification"),
        (lambda: remove_certificate_request(None), TypeError, "CertificateIdentification"),
        (lambda: generate_key_pair_request(0, invoke=0x100), ValueError, "must be 0..255"),
        (
            lambda: generate_key_pair_request(0, logical_name=bytes.fromhex("0000280000FF")),
            ValueError,
            "0.0.40.0.0.255 is not a security setup",
        ),
        (
            lambda: CertificateIdentificationByEntity(0, 0, ST[:7]),
            ValueError,
            "system_title must be 8 bytes",
        ),
        (lambda: CertificateIdentificationByEntity(4, 0, ST), ValueError, "certificate_entity"),
        (lambda: CertificateIdentificationBySerial(b"", ISSUER), ValueError, "serial_number must"),
        (lambda: CertificateIdentificationBySerial(SERIAL, b""), ValueError, "issuer must not"),
        (
            lambda: SecuritySetupRequest(0xC1, DEFAULT_SECURITY_SETUP, 3, BY_ENTITY),
            ValueError,
            "method_id must be 4..8, got 3",
        ),
    ],
)
def test_caller_bugs(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


# --- parser: malformed input is InputError naming field and offset -------------------------------

E = GOLDEN[3][2].hex()  # export by entity
H = E[:26]


PARSER_ERRORS = [
    (parse_generate_key_pair_request, _hex(HEADER + "04 01 1603"), "certificate_type", "type 3"),
    (parse_generate_key_pair_request, _hex(HEADER + "04 01 0903"), "certificate_type", "0x09"),
    (parse_generate_key_pair_request, _hex(HEADER + "05 01 1600"), "method_id", "0x05"),
    (parse_generate_key_pair_request, _hex(HEADER + "04 01 1600 00"), "end", "offset 15"),
    (
        parse_generate_certificate_request_request,
        _hex(HEADER + "05 01"),
        "certificate_type",
        "truncated: need 1 byte, 0 left at offset 13",
    ),
    (
        parse_import_certificate_request,
        _hex(HEADER + "06 01 09 820130") + CERTIFICATE[:-1],
        "certificate",
        "truncated: need 304 bytes, 303 left at offset 17",
    ),
    (
        parse_import_certificate_request,
        _hex(HEADER + "06 01 09 04 31020000"),
        "certificate",
        "must be a DER SEQUENCE (tag 0x30), got tag 0x31 at offset 15",
    ),
    (
        parse_import_certificate_request,
        _hex(HEADER + "06 01 09 04 30030000"),
        "certificate",
        "certificate DER says 5 bytes, the octet-string holds 4 at offset 15",
    ),
    (
        parse_import_certificate_request,
        _hex(HEADER + "06 01 09 00"),
        "certificate",
        "certificate is empty at offset 15",
    ),
    (
        parse_import_certificate_request,
        _hex(HEADER + "06 01 0a 00"),
        "certificate",
        "expected tag 0x09 (octet-string), got 0x0a at offset 13",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0203" + E[30:]),
        "certificate_identification",
        "certificate_identification must have 2 fields, got 3 at offset 14",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0202 1602" + E[34:]),
        "certificate_identification_type",
        "unknown certificate_identification_type 2; expected 0 (by_entity) or 1 (by_serial) "
        "at offset 15",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0202 1600 0202" + E[38:]),
        "certificate_identification_by_entity",
        "must have 3 fields, got 2 at offset 18",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0202 1600 0203 1604" + E[42:]),
        "certificate_entity",
        "unknown certificate_entity 4; expected 0 (server) or 1 (client) or "
        "2 (certification_authority) or 3 (other) at offset 19",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0202 1600 0203 1600 1609" + E[46:]),
        "certificate_type",
        "unknown certificate_type 9",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0202 1600 0203 1600 1600 0907 4D4D4D0000BC61"),
        "system_title",
        "system_title must be 8 bytes, got 7 at offset 23",
    ),
    (
        parse_export_certificate_request,
        _hex(H + "0202 1601 0202 0900 091B") + ISSUER,
        "serial_number",
        "serial_number is empty at offset 19",
    ),
    (
        parse_remove_certificate_request,
        _hex(H[:22] + "08 01 0202 1601 0202 0904 02021234 0900"),
        "issuer",
        "issuer is empty at offset 25",
    ),
    (parse_remove_certificate_request, GOLDEN[3][2], "method_id", "0x08 (remove_certificate)"),
    (parse_export_certificate_request, GOLDEN[3][2] + b"\x00", "end", "1 trailing byte"),
]


@pytest.mark.parametrize(("parse", "data", "field", "message"), PARSER_ERRORS)
def test_parser_rejects(
    parse: Callable[[bytes], SecuritySetupRequest], data: bytes, field: str, message: str
) -> None:
    with pytest.raises(InputError) as info:
        parse(data)
    assert info.value.field == field
    assert info.value.source is not None
    assert info.value.source.endswith("action-request")
    assert message in str(info.value)


SEEDS = [golden for _, _, golden in GOLDEN] + [
    generate_key_pair_request(2, invoke=0x02, logical_name=security_setup_logical_name(255)),
    import_certificate_request(bytes.fromhex("3003020101")),
]


@settings(max_examples=5000, deadline=None)
@given(mutated(*SEEDS), st.sampled_from(sorted(PARSERS)))
def test_parsers_raise_only_input_error(data: bytes, method_id: int) -> None:
    try:
        request = PARSERS[method_id](data)
    except InputError:
        return
    assert request.to_bytes() == data
    assert request.method_id == method_id
