"""kms.dlms.exception_response: golden bytes, oracles (gurux-dlms, dlms-cosem parsers), strict
parsing.

Both libraries serve as *parsing* oracles only. gurux-dlms 1.0.203 parses an exception-response
in ``GXDLMS.handleExceptionResponse`` (it raises ``GXDLMSExceptionResponse``) but has no encoder
for one; dlms-cosem 25.1.0's ``ExceptionResponse.to_bytes`` writes the invocation counter as one
byte (and drops it when it is 0), so its bytes are no reference (notes section 11).
"""

from __future__ import annotations

import pytest
from dlms_cosem import enumerations as dc_enums
from dlms_cosem.protocol.xdlms.exception_response import ExceptionResponse as DcExceptionResponse
from gurux_dlms import GXByteBuffer, GXDLMSExceptionResponse, GXReplyData
from gurux_dlms.enums import Command, ExceptionServiceError
from gurux_dlms.enums import StateError as GxStateError
from gurux_dlms.GXDLMS import GXDLMS
from hypothesis import given, settings
from hypothesis import strategies as st

from kms.dlms.exception_response import (
    EXCEPTION_RESPONSE,
    ExceptionResponse,
    ServiceError,
    StateError,
    deciphering_error,
    invocation_counter_error,
    parse_exception_response,
)
from kms.dlms.security_control import MAX_INVOCATION_COUNTER
from kms.errors import InputError

IC = 0x01234567
# Notes section 7: service-not-allowed, invocation-counter-error, the expected IC.
GOLDEN_IC_ERROR = bytes.fromhex("D8 01 06 01234567")
GOLDEN_DECIPHERING_ERROR = bytes.fromhex("D8 01 05")

NULL_ERRORS = [error for error in ServiceError if error != ServiceError.INVOCATION_COUNTER_ERROR]


def response(state: StateError, service: ServiceError, ic: int = IC) -> ExceptionResponse:
    carries_ic = service == ServiceError.INVOCATION_COUNTER_ERROR
    return ExceptionResponse(state, service, ic if carries_ic else None)


ALL_RESPONSES = [response(state, service) for state in StateError for service in ServiceError]
NULL_RESPONSES = [r for r in ALL_RESPONSES if r.invocation_counter is None]


# --- golden bytes -----------------------------------------------------------------------------


def test_golden_invocation_counter_error() -> None:
    parsed = parse_exception_response(GOLDEN_IC_ERROR)
    assert parsed == ExceptionResponse(
        StateError.SERVICE_NOT_ALLOWED, ServiceError.INVOCATION_COUNTER_ERROR, IC
    )
    assert parsed == invocation_counter_error(IC)
    assert parsed.to_bytes() == GOLDEN_IC_ERROR
    assert invocation_counter_error(IC).to_bytes() == GOLDEN_IC_ERROR


def test_golden_deciphering_error() -> None:
    parsed = parse_exception_response(GOLDEN_DECIPHERING_ERROR)
    assert parsed == deciphering_error()
    assert parsed.invocation_counter is None
    assert deciphering_error().to_bytes() == GOLDEN_DECIPHERING_ERROR


@pytest.mark.parametrize("state", list(StateError))
@pytest.mark.parametrize("service", NULL_ERRORS)
def test_null_alternatives_are_three_bytes(state: StateError, service: ServiceError) -> None:
    golden = bytes([0xD8, state, service])
    assert ExceptionResponse(state, service).to_bytes() == golden
    assert parse_exception_response(golden) == ExceptionResponse(state, service)


@pytest.mark.parametrize(
    ("ic", "hex_ic"), [(0, "00000000"), (1, "00000001"), (MAX_INVOCATION_COUNTER, "FFFFFFFF")]
)
def test_invocation_counter_is_four_bytes_big_endian(ic: int, hex_ic: str) -> None:
    data = invocation_counter_error(ic).to_bytes()
    assert data == bytes.fromhex("D80106" + hex_ic)
    assert parse_exception_response(data).invocation_counter == ic


def test_enum_values() -> None:
    assert EXCEPTION_RESPONSE == 0xD8
    assert [int(s) for s in StateError] == [1, 2]
    assert [int(s) for s in ServiceError] == [1, 2, 3, 4, 5, 6]


# --- oracles ----------------------------------------------------------------------------------


def test_enums_match_gurux_and_dlms_cosem() -> None:
    assert (
        {s.name: int(s) for s in StateError}
        == {s.name: int(s) for s in GxStateError}
        == {s.name: int(s) for s in dc_enums.StateException}
    )
    assert (
        {s.name: int(s) for s in ServiceError}
        == {s.name: int(s) for s in ExceptionServiceError}
        == {s.name: int(s) for s in dc_enums.ServiceException}
    )


def _gurux_parse(data: bytes) -> tuple[int, int, int | None]:
    """What GXDLMS.handleExceptionResponse reads (it gets the bytes after the tag)."""
    assert data[0] == Command.EXCEPTION_RESPONSE
    reply = GXReplyData()
    reply.data = GXByteBuffer(data[1:])
    with pytest.raises(GXDLMSExceptionResponse) as caught:
        GXDLMS.handleExceptionResponse(reply)
    error = caught.value
    return error.exceptionStateError, error.exceptionServiceError, error.serviceErrorValue


@pytest.mark.parametrize("ours", ALL_RESPONSES, ids=lambda r: r.to_bytes().hex())
def test_gurux_parses_our_bytes(ours: ExceptionResponse) -> None:
    state, service, value = _gurux_parse(ours.to_bytes())
    assert (state, service) == (ours.state_error, ours.service_error)
    if ours.invocation_counter is not None:
        assert value == ours.invocation_counter
    else:
        assert value is None


@pytest.mark.parametrize("ours", ALL_RESPONSES, ids=lambda r: r.to_bytes().hex())
def test_dlms_cosem_parses_our_bytes(ours: ExceptionResponse) -> None:
    theirs = DcExceptionResponse.from_bytes(ours.to_bytes())
    assert theirs.state_error == ours.state_error
    assert theirs.service_error == ours.service_error
    assert theirs.invocation_counter_data == ours.invocation_counter


@pytest.mark.parametrize("ours", NULL_RESPONSES, ids=lambda r: r.to_bytes().hex())
def test_dlms_cosem_builds_the_null_alternatives_alike(ours: ExceptionResponse) -> None:
    built = DcExceptionResponse(ours.state_error, ours.service_error).to_bytes()
    assert built == ours.to_bytes()


def test_dlms_cosem_invocation_counter_bytes_are_refused() -> None:
    # Its to_bytes writes the IC as one byte: D8 01 06 05, which a strict parser refuses.
    built = DcExceptionResponse(1, 6, 5).to_bytes()
    assert built == bytes.fromhex("D8010605")
    with pytest.raises(InputError) as caught:
        parse_exception_response(built)
    assert caught.value.field == "invocation_counter"
    assert "at offset 3" in str(caught.value)


# --- strict parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_input", "field", "offset"),
    [
        ("", "tag", 0),
        ("D9", "tag", 0),
        ("DD010601234567", "tag", 0),
        ("D8", "state_error", 1),
        ("D800", "state_error", 1),
        ("D80305", "state_error", 1),
        ("D8FF05", "state_error", 1),
        ("D801", "service_error", 2),
        ("D80100", "service_error", 2),
        ("D80107", "service_error", 2),
        ("D802FF", "service_error", 2),
        ("D80106", "invocation_counter", 3),
        ("D80106012345", "invocation_counter", 3),
        ("D8010601234567" + "00", "end", 7),
        ("D8010500", "end", 3),
        ("D80201" + "01234567", "end", 3),
    ],
)
def test_parse_errors(hex_input: str, field: str, offset: int) -> None:
    with pytest.raises(InputError) as caught:
        parse_exception_response(bytes.fromhex(hex_input))
    assert caught.value.field == field
    assert f"field {field!r}" in str(caught.value)
    assert f"at offset {offset}" in str(caught.value)
    assert caught.value.source == "exception-response APDU"


def test_unknown_values_are_named() -> None:
    with pytest.raises(
        InputError, match=r"unknown state-error 3; expected 1 \(service_not_allowed\) or 2"
    ):
        parse_exception_response(bytes.fromhex("D80305"))
    with pytest.raises(
        InputError, match=r"unknown service-error 7; expected 1 \(operation_not_possible\)"
    ):
        parse_exception_response(bytes.fromhex("D80107"))


def test_bytearray_input() -> None:
    data = bytearray(GOLDEN_IC_ERROR)
    parsed = parse_exception_response(data)  # type: ignore[arg-type]
    data[3] = 0xFF
    assert parsed.invocation_counter == IC


# --- builders: caller bugs --------------------------------------------------------------------


def test_invocation_counter_error_needs_the_counter() -> None:
    with pytest.raises(ValueError, match="needs the invocation_counter"):
        ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, ServiceError.INVOCATION_COUNTER_ERROR)


@pytest.mark.parametrize("service", NULL_ERRORS)
def test_other_errors_carry_no_counter(service: ServiceError) -> None:
    with pytest.raises(ValueError, match="carried only by invocation-counter-error"):
        ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, service, 0)


@pytest.mark.parametrize("ic", [-1, MAX_INVOCATION_COUNTER + 1])
def test_counter_range(ic: int) -> None:
    with pytest.raises(ValueError, match="invocation_counter must be"):
        invocation_counter_error(ic)


@pytest.mark.parametrize(
    ("state", "service", "message"),
    [
        (0, 5, r"state_error must be 1 \(service_not_allowed\) or 2 \(service_unknown\), got 0"),
        (3, 5, r"state_error must be 1 .* got 3"),
        (1, 0, r"service_error must be 1 \(operation_not_possible\) or .* got 0"),
        (1, 7, r"service_error must be .* or 6 \(invocation_counter_error\), got 7"),
    ],
)
def test_enum_range(state: int, service: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExceptionResponse(state, service)  # type: ignore[arg-type]


def test_plain_ints_become_enums() -> None:
    built = ExceptionResponse(1, 6, IC)  # type: ignore[arg-type]
    assert built.state_error is StateError.SERVICE_NOT_ALLOWED
    assert built.service_error is ServiceError.INVOCATION_COUNTER_ERROR
    assert built == invocation_counter_error(IC)


def test_wrong_types() -> None:
    with pytest.raises(TypeError, match="state_error must be a StateError"):
        ExceptionResponse(True, ServiceError.DECIPHERING_ERROR)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="service_error must be a ServiceError"):
        ExceptionResponse(StateError.SERVICE_UNKNOWN, "5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="invocation_counter must be int"):
        invocation_counter_error(b"\x00\x00\x00\x01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="invocation_counter must be int"):
        invocation_counter_error(True)


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        deciphering_error().state_error = StateError.SERVICE_UNKNOWN  # type: ignore[misc]


# --- properties -------------------------------------------------------------------------------

ICS = st.integers(0, MAX_INVOCATION_COUNTER)


@given(st.sampled_from(list(StateError)), st.sampled_from(list(ServiceError)), ICS)
@settings(max_examples=10_000, deadline=None)
def test_round_trip(state: StateError, service: ServiceError, ic: int) -> None:
    built = response(state, service, ic)
    data = built.to_bytes()
    assert parse_exception_response(data) == built
    assert len(data) == (7 if built.invocation_counter is not None else 3)


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """Near misses of a valid APDU: truncated, extended or with one byte changed."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.binary(min_size=1, max_size=4).map(lambda extra: seed + extra),
        st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)).map(
            lambda change: seed[: change[0]] + bytes([change[1]]) + seed[change[0] + 1 :]
        ),
    )


ANY_EXCEPTION = st.one_of(
    st.binary(max_size=10),
    st.binary(max_size=8).map(b"\xd8".__add__),
    st.tuples(st.integers(0, 3), st.integers(0, 7), st.binary(max_size=6)).map(
        lambda t: bytes([0xD8, t[0], t[1]]) + t[2]
    ),
    _mutated(GOLDEN_IC_ERROR),
    _mutated(GOLDEN_DECIPHERING_ERROR),
)


@given(ANY_EXCEPTION)
@settings(max_examples=10_000, deadline=None)
def test_parse_raises_only_input_error(data: bytes) -> None:
    try:
        parsed = parse_exception_response(data)
    except InputError:
        return
    assert parsed.to_bytes() == data
