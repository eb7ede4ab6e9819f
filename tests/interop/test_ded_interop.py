"""Dedicated keys with other DLMS stacks (issue 4): gurux-dlms opens the KMS's
glo-initiate-request and dlms-cosem parses the InitiateRequest inside, as a meter would, to
learn the dedicated key; then ded- and general-ded-ciphered APDUs go both ways in every SC mode:
what the KMS protects, gurux-dlms (and, for SC 0x3s, dlms-cosem) opens; what gurux-dlms
protects as the meter, the KMS verifies."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from dlms_cosem.protocol.xdlms.initiate_request import InitiateRequest as CosemInitiateRequest
from dlms_cosem.security import SecurityControlField, decrypt
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Command, Security
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite

from kms.errors import InvocationCounterError
from kms.services.hes.associations import association_factory
from kms.services.hes.protection import Form, TokenApduProtection, apdu_protection_factory
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.interop.oracles import split_envelope
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
GET_REQUEST = bytes.fromhex("C001C1 0008 0000010000FF 02 00")
GET_RESPONSE = bytes.fromhex("C401C1 00 090C 07E60B1D0207102200FFC400")


def gurux_cipher(
    key: bytes, ak: bytes, sc: int, originator: bytes, ic: int, tag: int, apdu: bytes
) -> bytes:
    p = AesGcmParameter(tag, originator, key, ak)
    p.security = Security(sc & 0x30)
    p.securitySuite = SecuritySuite(sc & 0x0F)
    p.invocationCounter = ic
    return bytes(GXDLMSChippering.encryptAesGcm(p, apdu))


def gurux_open(key: bytes, ak: bytes, originator: bytes, data: bytes) -> bytes:
    """gurux-dlms deciphers; it does not check a 0x3s tag itself, so cipher the result again
    and require the same bytes (as tests/interop/oracles.py does)."""
    sc = data[2] if data[0] not in (0xDB, 0xDC) else split_envelope(data).security_control
    p = AesGcmParameter(0, originator, key, ak)
    with contextlib.redirect_stdout(io.StringIO()):
        plain = bytes(GXDLMSChippering.decryptAesGcm(None, p, GXByteBuffer(data)))
    tag = Command.GENERAL_DED_CIPHERING if data[0] == 0xDC else data[0]
    if tag == Command.GENERAL_DED_CIPHERING:
        p2 = AesGcmParameter(tag, originator, key, ak)
        p2.security, p2.securitySuite = Security(sc & 0x30), SecuritySuite(sc & 0x0F)
        p2.invocationCounter = p.invocationCounter
        again = bytes(GXDLMSChippering.encryptAesGcm(p2, plain))
    else:
        again = gurux_cipher(key, ak, sc, originator, p.invocationCounter, tag, plain)
    assert again == data
    return plain


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenApduProtection]:
    svc = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        yield svc
    finally:
        svc.close()


def opened_association(service: TokenApduProtection, meter: FieldMeter) -> tuple[str, bytes]:
    """Open an association; the meter side (gurux, dlms-cosem) learns the dedicated key."""
    keys = meter.keys()
    opened = association_factory(service).open(meter.system_title, 0x30 | meter.suite, actor=ACTOR)
    plain = gurux_open(keys["GUEK"], keys["GAK"], CLIENT, opened.apdu)
    request = CosemInitiateRequest.from_bytes(plain)
    assert request.dedicated_key is not None
    return opened.handle, bytes(request.dedicated_key)


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_ded_and_general_ded_both_ways_in_every_mode(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, suite: int
) -> None:
    meter = field_meter(kms, tmp_path, 80 + suite, suite)
    ak = meter.keys()["GAK"]
    handle, dedicated = opened_association(service, meter)
    ic = 10
    for form, tag in ((Form.DED, 0xD0), (Form.GENERAL_DED, 0xDC)):
        for mode in (0x10, 0x20, 0x30):
            sc = mode | suite
            result = service.protect(
                meter.system_title, GET_REQUEST, sc, form=form, association=handle, actor=ACTOR
            )
            assert result.apdu[0] == tag
            assert gurux_open(dedicated, ak, CLIENT, result.apdu) == GET_REQUEST
            if mode == 0x30:
                envelope = split_envelope(result.apdu)
                field = SecurityControlField(
                    security_suite=suite, authenticated=True, encrypted=True
                )
                assert (
                    decrypt(field, CLIENT, envelope.invocation_counter, dedicated,
                            envelope.payload, ak)
                    == GET_REQUEST
                )  # fmt: skip
            ic += 1
            response_tag = 0xD4 if form is Form.DED else Command.GENERAL_DED_CIPHERING
            answer = gurux_cipher(
                dedicated, ak, sc, meter.system_title, ic, response_tag, GET_RESPONSE
            )
            verified = service.verify(
                meter.system_title,
                answer,
                association=handle,
                allow_unauthenticated=mode == 0x20,
                actor=ACTOR,
            )
            assert (verified.apdu, verified.invocation_counter) == (GET_RESPONSE, ic)
            with pytest.raises(InvocationCounterError):
                service.verify(
                    meter.system_title,
                    answer,
                    association=handle,
                    allow_unauthenticated=True,
                    actor=ACTOR,
                )
