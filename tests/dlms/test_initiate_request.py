"""kms.dlms.initiate_request: the Green Book glo-initiate-request plaintext (notes 8.3), dlms-cosem
as the parsing oracle, strict parsing (10,000 examples)."""

from __future__ import annotations

import pytest
from dlms_cosem.protocol.xdlms.initiate_request import InitiateRequest as CosemInitiateRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.initiate_request import InitiateRequest, parse_initiate_request
from kms.errors import InputError
from tests.dlms.protection_vectors import ciphering_vectors

KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def test_the_green_book_vector_is_this_request() -> None:
    (vector,) = [v for v in ciphering_vectors() if "initiate" in v.source and not v.fail]
    request = InitiateRequest(KEY, client_max_receive_pdu_size=0x04B0)
    assert bytes(request.to_bytes()) == vector.apdu
    assert parse_initiate_request(vector.apdu) == request
    assert parse_initiate_request(vector.apdu).dedicated_key == KEY


@pytest.mark.parametrize(
    "request_",
    [
        InitiateRequest(KEY),
        InitiateRequest(bytes(32), client_max_receive_pdu_size=0x0400),
        InitiateRequest(None, proposed_conformance=0x001E1D, client_max_receive_pdu_size=512),
    ],
)
def test_dlms_cosem_reads_what_we_write(request_: InitiateRequest) -> None:
    # (dlms-cosem 25.1 misreads a present quality-of-service or a response-allowed FALSE, so
    # the oracle sees the defaults only; the strict parser below covers the rest.)
    data = bytes(request_.to_bytes())
    theirs = CosemInitiateRequest.from_bytes(data)
    assert theirs.dedicated_key == request_.dedicated_key
    assert theirs.response_allowed == request_.response_allowed
    assert theirs.client_max_receive_pdu_size == request_.client_max_receive_pdu_size
    assert theirs.proposed_dlms_version_number == 6
    assert parse_initiate_request(data) == request_


def test_the_key_is_not_in_the_repr() -> None:
    assert KEY.hex() not in repr(InitiateRequest(KEY)).lower()
    assert "dedicated_key" not in repr(InitiateRequest(KEY))


@pytest.mark.parametrize(
    ("hex_input", "field", "offset"),
    [
        ("02", "tag", 0),
        ("0102", "dedicated_key", 1),
        ("01010f" + "00" * 15, "dedicated_key", 2),
        ("0101100011", "dedicated_key", 3),
        ("010002", "response_allowed", 2),
        ("01000102", "response_allowed", 3),
        ("01000005", "proposed_quality_of_service", 3),
        ("010000000600", "proposed_conformance", 5),
        ("01000000065f1f0401007e1f04b0", "proposed_conformance", 5),
        ("01000000065f1f0400007e1f04", "client_max_receive_pdu_size", 12),
        ("01000000065f1f0400007e1f04b000", "end", 14),
    ],
)
def test_parse_errors_name_field_and_offset(hex_input: str, field: str, offset: int) -> None:
    with pytest.raises(InputError) as caught:
        parse_initiate_request(bytes.fromhex(hex_input))
    assert caught.value.field == field
    assert f"offset {offset}" in caught.value.message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dedicated_key": bytes(15)},
        {"proposed_conformance": 1 << 24},
        {"client_max_receive_pdu_size": -1},
        {"proposed_quality_of_service": 256},
    ],
)
def test_builder_refuses_bad_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        InitiateRequest(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=10_000, deadline=None)
@given(
    key=st.none() | st.binary(min_size=16, max_size=16) | st.binary(min_size=32, max_size=32),
    allowed=st.booleans(),
    qos=st.none() | st.integers(0, 255),
    conformance=st.integers(0, 0xFFFFFF),
    pdu=st.integers(0, 0xFFFF),
)
def test_round_trip(
    key: bytes | None, allowed: bool, qos: int | None, conformance: int, pdu: int
) -> None:
    request = InitiateRequest(key, allowed, qos, 6, conformance, pdu)
    assert parse_initiate_request(bytes(request.to_bytes())) == request


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=48))
def test_parse_raises_only_input_error(data: bytes) -> None:
    try:
        request = parse_initiate_request(b"\x01" + data)
    except InputError:
        return
    assert bytes(request.to_bytes()) == b"\x01" + data
