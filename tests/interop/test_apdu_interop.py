"""APDU protection round trips with other DLMS stacks: gurux-dlms and dlms-cosem (issue 4).

What the KMS protects (as the head-end, the client system title as originator), each oracle
opens with the keys the simulated meter learnt from its key_transfer, checking the tag; what
each oracle protects as the meter (its system title, an increasing IC), the KMS verifies. Every
suite (0, 1, 2), both global-key forms (service-specific glo- and general-glo-ciphering; the
dedicated-key forms are in test_ded_interop.py) and every SC mode (0x10 authentication, 0x20
encryption, 0x30 both), unicast (GUEK) and broadcast (GBEK). Both stacks handle suites 1 and 2
for these APDUs, whose AAD is SC || AK in every suite; how each stack's gaps and quirks are
worked around is in :mod:`tests.interop.oracles`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher
from dlms_cosem.security import SecurityControlField, encrypt

from kms.errors import InputError, InvocationCounterError
from kms.services.hes.protection import (
    ApduResult,
    Form,
    TokenApduProtection,
    apdu_protection_factory,
)
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.interop.oracles import ORACLES, Opened, Oracle, OracleRefused, split_envelope
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
SUITES = (0, 1, 2)
MODES = (0x10, 0x20, 0x30)
FORMS = (Form.GLO, Form.GENERAL_GLO)

_LONG = bytes(range(256)) + bytes(range(44))  # 300 bytes: A-XDR lengths 0x82 nnnn
#: get-request-normal, Clock 0.0.1.0.0.255 attribute 2 (notes section 8.1).
GET_REQUEST = bytes.fromhex("C001C1 0008 0000010000FF 02 00")
#: set-request-normal, Data 0.0.96.1.0.255 attribute 2 := a 300-byte octet-string.
SET_REQUEST = bytes.fromhex("C101C1 0001 0000600100FF 02 00 0982012C") + _LONG
#: get-response-normal: an octet-string date-time (2022-11-29 07:16:34, deviation -60 min).
GET_RESPONSE = bytes.fromhex("C401C1 00 090C 07E60B1D0207102200FFC400")
#: get-response-normal carrying a 300-byte octet-string.
LONG_GET_RESPONSE = bytes.fromhex("C401C1 00 0982012C") + _LONG


def ids(value: object) -> str:
    if isinstance(value, Form):
        return value.value
    if isinstance(value, int):
        return f"0x{value:02x}"
    return str(getattr(value, "name", value))


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenApduProtection]:
    svc = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        yield svc
    finally:
        svc.close()


def tampered(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


# --- round trips -----------------------------------------------------------------------------

#: (APDU, IC, carry the system title in general-glo-ciphering) the oracle sends as the meter:
#: ICs increase, with gaps, up to the last valid one.
METER_SENDS = (
    (GET_RESPONSE, 1, True),
    (LONG_GET_RESPONSE, 2, True),
    (GET_RESPONSE, 0x00FF0000, False),
    (LONG_GET_RESPONSE, 0xFFFFFFFE, True),
)


@pytest.mark.parametrize("mode", MODES, ids=ids)
@pytest.mark.parametrize("form", FORMS, ids=ids)
@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("oracle", ORACLES, ids=ids)
def test_round_trip_both_ways(
    kms: Kms,
    tmp_path: Path,
    service: TokenApduProtection,
    oracle: Oracle,
    suite: int,
    form: Form,
    mode: int,
) -> None:
    meter = field_meter(kms, tmp_path, 1, suite)
    kms_to_oracle(service, oracle, meter, form, mode | suite)
    oracle_to_kms(service, oracle, meter, form, mode | suite)


def kms_to_oracle(
    service: TokenApduProtection, oracle: Oracle, meter: FieldMeter, form: Form, sc: int
) -> None:
    """The KMS protects as the head-end; the oracle opens it with the meter's keys."""
    keys = meter.keys()
    ics = []
    for apdu in (GET_REQUEST, SET_REQUEST):
        result = service.protect(meter.system_title, apdu, sc, form=form, actor=ACTOR)
        ics.append(result.invocation_counter)
        assert oracle.open(keys, CLIENT, result.apdu) == Opened(
            apdu, CLIENT, result.invocation_counter, sc
        )
        envelope = split_envelope(result.apdu)
        assert envelope.system_title == (CLIENT if form is Form.GENERAL_GLO else None)
        if sc & 0x10:
            # The oracle's check is live: a changed tag or body byte is refused.
            for position in (len(result.apdu) - 1, len(result.apdu) - 13):
                with pytest.raises(OracleRefused):
                    oracle.open(keys, CLIENT, tampered(result.apdu, position))
            # And so is the APDU under another AK.
            with pytest.raises(OracleRefused):
                oracle.open(dict(keys, GAK=bytes(len(keys["GAK"]))), CLIENT, result.apdu)
    assert ics[0] < ics[1]


def oracle_to_kms(
    service: TokenApduProtection, oracle: Oracle, meter: FieldMeter, form: Form, sc: int
) -> None:
    """The oracle protects as the meter; the KMS verifies."""
    keys = meter.keys()
    general = form is Form.GENERAL_GLO
    sent = []
    for apdu, ic, with_title in METER_SENDS:
        data = oracle.cipher(
            keys, sc, meter.system_title, ic, apdu, general=general, send_system_title=with_title
        )
        sent.append(data)
        assert split_envelope(data).invocation_counter == ic
        # Encryption only carries no tag: accepted only where the meter's policy says so.
        unauthenticated = not sc & 0x10
        if unauthenticated:
            with pytest.raises(InputError, match="encryption only"):
                service.verify(meter.system_title, data, actor=ACTOR)
        result = service.verify(
            meter.system_title, data, allow_unauthenticated=unauthenticated, actor=ACTOR
        )
        assert result == ApduResult(apdu, meter.system_title, ic, authenticated=not unauthenticated)
    # What the oracle sent was taken as sent: the replay and the maximum IC are refused.
    with pytest.raises(InvocationCounterError):
        service.verify(meter.system_title, sent[-1], allow_unauthenticated=True, actor=ACTOR)
    at_max = oracle.cipher(keys, sc, meter.system_title, 0xFFFFFFFF, GET_RESPONSE, general=general)
    with pytest.raises(InvocationCounterError):
        service.verify(meter.system_title, at_max, allow_unauthenticated=True, actor=ACTOR)


# --- broadcast --------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("oracle", ORACLES, ids=ids)
def test_broadcast_both_ways_under_the_gbek(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, oracle: Oracle, suite: int
) -> None:
    meter = field_meter(kms, tmp_path, 1, suite)
    keys = meter.keys()
    unicast_only = dict(keys, GBEK=keys["GUEK"])  # an oracle that wrongly used the GUEK
    ic = 100
    for form in FORMS:
        for mode in (0x50, 0x60, 0x70):
            sc = mode | suite
            result = service.protect(meter.system_title, GET_REQUEST, sc, form=form, actor=ACTOR)
            assert oracle.open(keys, CLIENT, result.apdu) == Opened(
                GET_REQUEST, CLIENT, result.invocation_counter, sc
            )
            if mode & 0x10:
                with pytest.raises(OracleRefused):
                    oracle.open(unicast_only, CLIENT, result.apdu)
            else:
                # Nothing to verify without a tag: the GUEK yields noise (or a glo- tag that
                # no longer matches the APDU "inside", which the oracles refuse).
                try:
                    noise = oracle.open(unicast_only, CLIENT, result.apdu).apdu
                except OracleRefused:
                    noise = b""
                assert noise != GET_REQUEST
            ic += 1
            general = form is Form.GENERAL_GLO
            data = oracle.cipher(keys, sc, meter.system_title, ic, GET_RESPONSE, general=general)
            verified = service.verify(
                meter.system_title, data, allow_unauthenticated=True, actor=ACTOR
            )
            assert verified == ApduResult(
                GET_RESPONSE, meter.system_title, ic, authenticated=bool(sc & 0x10)
            )


# --- an oracle quirk the KMS must not accept --------------------------------------------------


def test_dlms_cosem_raw_length_byte_is_refused(
    kms: Kms, tmp_path: Path, service: TokenApduProtection
) -> None:
    # GeneralGlobalCipher.to_bytes writes a ciphered-content length of 128..255 as one raw
    # byte, which A-XDR reads as a long-form length prefix: the KMS names the field.
    meter = field_meter(kms, tmp_path, 1, 0)
    keys = meter.keys()
    field = SecurityControlField(0, authenticated=True, encrypted=True)
    apdu = GET_RESPONSE + bytes(100)
    payload = encrypt(field, meter.system_title, 7, keys["GUEK"], apdu, keys["GAK"])
    data = GeneralGlobalCipher(meter.system_title, field, 7, payload).to_bytes()
    assert data[10] == len(payload) + 5 >= 0x80
    with pytest.raises(InputError) as caught:
        service.verify(meter.system_title, data, actor=ACTOR)
    assert caught.value.field == "length"
    # The same content with an A-XDR length (0x81 nn) verifies.
    fixed = data[:10] + bytes([0x81]) + data[10:]
    assert service.verify(meter.system_title, fixed, actor=ACTOR).apdu == apdu
