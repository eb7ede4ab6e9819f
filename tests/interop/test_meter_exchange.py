"""The head-end and a simulated meter exchange protected get-requests and get-responses (issue 4).

A meter is provisioned through the service, applies its key_transfer APDUs in the simulated
meter of the provisioning work (:mod:`tests.interop.meter`) and is confirmed; a
:class:`~tests.interop.meter_session.MeterSession` then serves its side of the association with
the keys the simulated meter learnt -- pyca/cryptography and dlms-cosem only, no KMS code. The
KMS protects each get-request (Clock 0.0.1.0.0.255, attribute 2, built by dlms-cosem) with its
own send counter; the meter checks the IC against its receive floor, deciphers, answers under
its own send counter; the KMS verifies the get-response. Replays are refused both ways.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from dlms_cosem import enumerations
from dlms_cosem.cosem import CosemAttribute, Obis
from dlms_cosem.protocol.xdlms.exception_response import ExceptionResponse
from dlms_cosem.protocol.xdlms.get import (
    GetRequestNormal,
    GetResponseFactory,
    GetResponseNormal,
    GetResponseNormalWithError,
)
from dlms_cosem.protocol.xdlms.invoke_id_and_priority import InvokeIdAndPriority
from dlms_cosem.time import datetime_from_bytes

from kms.dlms.exception_response import ServiceError, StateError, parse_exception_response
from kms.errors import InvocationCounterError
from kms.services.hes.protection import Form, TokenApduProtection, apdu_protection_factory
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.interop.meter_session import CLOCK, MeterSession
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
START = datetime.datetime(
    2024, 11, 29, 7, 16, 34, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
)
CLOCK_TIME = CosemAttribute(enumerations.CosemInterface.CLOCK, CLOCK, 2)


def get_request(invoke_id: int, attribute: CosemAttribute = CLOCK_TIME) -> bytes:
    """A get-request-normal, by dlms-cosem."""
    return bytes(GetRequestNormal(attribute, InvokeIdAndPriority(invoke_id % 16)).to_bytes())


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenApduProtection]:
    svc = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        yield svc
    finally:
        svc.close()


def session(field: FieldMeter, *, first_send_ic: int = 1) -> MeterSession:
    return MeterSession(
        field.system_title, field.suite, field.keys(), CLIENT, START, first_send_ic=first_send_ic
    )


@pytest.mark.parametrize("form", [Form.GLO, Form.GENERAL_GLO], ids=lambda f: f.value)
@pytest.mark.parametrize("mode", [0x10, 0x20, 0x30], ids=lambda m: f"0x{m:02x}")
@pytest.mark.parametrize("suite", [0, 1, 2])
def test_several_exchanges_in_a_row(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, suite: int, mode: int, form: Form
) -> None:
    field = field_meter(kms, tmp_path, 1, suite)
    meter = session(field, first_send_ic=40)
    sc = mode | suite
    for n in range(1, 6):
        sent = service.protect(field.system_title, get_request(n), sc, form=form, actor=ACTOR)
        answer = meter.handle(sent.apdu)
        assert meter.last_refusal is None
        assert meter.receive_floor == sent.invocation_counter + 1
        assert answer[0] == (0xDB if form is Form.GENERAL_GLO else 0xCC)
        # Encryption only (SC 0x2s) carries no tag: the head-end accepts it only where the
        # meter's policy says so, which is the case here.
        result = service.verify(
            field.system_title, answer, allow_unauthenticated=mode == 0x20, actor=ACTOR
        )
        assert (result.system_title, result.invocation_counter) == (field.system_title, 39 + n)
        response = GetResponseFactory.from_bytes(result.apdu)
        assert isinstance(response, GetResponseNormal)
        assert response.invoke_id_and_priority.invoke_id == n
        assert response.data[:2] == b"\x09\x0c"  # octet-string, 12 bytes: a date-time
        when, _status = datetime_from_bytes(response.data[2:])
        assert when == START + datetime.timedelta(seconds=n - 1)
    assert meter.send_ic == 45


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_replays_are_refused_both_ways(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, suite: int
) -> None:
    field = field_meter(kms, tmp_path, 1, suite)
    meter = session(field)
    sc = 0x30 | suite
    first = service.protect(field.system_title, get_request(1), sc, actor=ACTOR)
    second = service.protect(field.system_title, get_request(2), sc, actor=ACTOR)
    answer = meter.handle(second.apdu)
    assert meter.last_refusal is None
    service.verify(field.system_title, answer, actor=ACTOR)

    # The meter refuses the same request again, and an older one that arrives late.
    floor, send_ic = meter.receive_floor, meter.send_ic
    for replay in (second, first):
        refusal = meter.handle(replay.apdu)
        assert refusal == bytes.fromhex("D80106") + floor.to_bytes(4, "big")
        assert (meter.receive_floor, meter.send_ic) == (floor, send_ic)
        parsed = parse_exception_response(refusal)
        assert (parsed.state_error, parsed.service_error) == (
            StateError.SERVICE_NOT_ALLOWED,
            ServiceError.INVOCATION_COUNTER_ERROR,
        )
        assert parsed.invocation_counter == second.invocation_counter + 1
        assert ExceptionResponse.from_bytes(refusal).invocation_counter_data == floor

    # The KMS refuses the meter's response again, with the form a meter would send.
    with pytest.raises(InvocationCounterError) as caught:
        service.verify(field.system_title, answer, actor=ACTOR)
    assert caught.value.exception_response == bytes.fromhex("D80106 00000002")

    # And the exchange goes on.
    third = service.protect(field.system_title, get_request(3), sc, actor=ACTOR)
    result = service.verify(field.system_title, meter.handle(third.apdu), actor=ACTOR)
    assert isinstance(GetResponseFactory.from_bytes(result.apdu), GetResponseNormal)


@pytest.mark.parametrize("suite", [0, 2])
def test_a_changed_request_is_refused_and_the_floor_holds(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, suite: int
) -> None:
    field = field_meter(kms, tmp_path, 1, suite)
    meter = session(field)
    for mode in (0x10, 0x30):
        sent = service.protect(field.system_title, get_request(1), mode | suite, actor=ACTOR)
        for position in (len(sent.apdu) - 1, 7, 6):  # the tag, the body, the IC's last byte
            changed = bytearray(sent.apdu)
            changed[position] ^= 0x01
            floor = meter.receive_floor
            assert meter.handle(bytes(changed)) == bytes.fromhex("D80105")
            assert meter.receive_floor == floor
        # The original still goes through: nothing was consumed by the forgeries.
        assert meter.handle(sent.apdu)[0] == 0xCC


def test_a_request_for_another_meter_is_refused(
    kms: Kms, tmp_path: Path, service: TokenApduProtection
) -> None:
    field_a = field_meter(kms, tmp_path, 1, 0)
    field_b = field_meter(kms, tmp_path, 2, 0)
    assert field_a.keys()["GUEK"] != field_b.keys()["GUEK"]
    meter_a = session(field_a)
    for_b = service.protect(field_b.system_title, get_request(1), 0x30, actor=ACTOR)
    assert meter_a.handle(for_b.apdu) == bytes.fromhex("D80105")
    assert meter_a.last_refusal == "tag does not verify"
    # A suite the meter does not use is refused before any cryptography.
    assert meter_a.handle(bytes([0xC8]) + for_b.apdu[1:2] + b"\x31" + for_b.apdu[3:]) == (
        bytes.fromhex("D80105")
    )


def test_an_unknown_attribute_gets_object_undefined(
    kms: Kms, tmp_path: Path, service: TokenApduProtection
) -> None:
    field = field_meter(kms, tmp_path, 1, 1)
    meter = session(field)
    register = CosemAttribute(enumerations.CosemInterface.REGISTER, Obis(1, 0, 1, 8, 0), 2)
    sent = service.protect(field.system_title, get_request(7, register), 0x31, actor=ACTOR)
    result = service.verify(field.system_title, meter.handle(sent.apdu), actor=ACTOR)
    response = GetResponseFactory.from_bytes(result.apdu)
    assert isinstance(response, GetResponseNormalWithError)
    assert response.error == enumerations.DataAccessResult.OBJECT_UNDEFINED
    assert response.invoke_id_and_priority.invoke_id == 7
