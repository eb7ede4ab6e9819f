"""Associations with a dedicated key (issue 4 section 2): the glo-initiate-request carries a
key made in the token, and the ded- forms use it; pyca/cryptography and dlms-cosem's
InitiateRequest parser play the meter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dlms_cosem.protocol.xdlms.initiate_request import InitiateRequest as CosemInitiateRequest
from sqlalchemy import select

from kms.db import Association, AssociationState, AuditEvent
from kms.dlms.ciphered_apdu import parse_ciphered_apdu, parse_general_ciphering
from kms.errors import HsmError, InputError, InvocationCounterError, KeyStateError, NotFoundError
from kms.services.hes.associations import TokenAssociationService, association_factory
from kms.services.hes.protection import Form, TokenApduProtection, apdu_protection_factory
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
GET_REQUEST = bytes.fromhex("C0010000080000010000FF0200")
GET_RESPONSE = bytes.fromhex("C4010000090C07E60B1D0716222A00FF8880")


def open_as_meter(meter: FieldMeter, apdu: bytes) -> bytes:
    """What the meter does with a glo-initiate-request: decipher it, take the dedicated key."""
    keys = meter.keys()
    parsed = parse_ciphered_apdu(apdu)
    assert parsed.tag == 0x21
    sc = parsed.security_control.to_byte()
    iv = CLIENT + parsed.invocation_counter.to_bytes(4, "big")
    body = parsed.payload[:-12]
    plain = AESGCM(keys["GUEK"]).encrypt(iv, body, b"")[: len(body)]
    full = AESGCM(keys["GUEK"]).encrypt(iv, plain, bytes([sc]) + keys["GAK"])
    assert full[len(plain) : len(plain) + 12] == parsed.payload[-12:]
    request = CosemInitiateRequest.from_bytes(plain)
    assert request.dedicated_key is not None
    return bytes(request.dedicated_key)


def ded_response(key: bytes, ak: bytes, meter: FieldMeter, ic: int, apdu: bytes) -> bytes:
    iv = meter.system_title + ic.to_bytes(4, "big")
    sealed = AESGCM(key).encrypt(iv, apdu, b"\x30" + ak)[: len(apdu) + 12]
    body = b"\x30" + ic.to_bytes(4, "big") + sealed
    return bytes([apdu[0] + 16, len(body)]) + body


@pytest.fixture
def apdus(kms: Kms) -> Iterator[TokenApduProtection]:
    svc = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def associations(apdus: TokenApduProtection) -> TokenAssociationService:
    return association_factory(apdus)


@pytest.mark.parametrize("suite", [0, 2])
def test_the_dedicated_key_reaches_the_meter_and_protects_ded_apdus(
    kms: Kms,
    tmp_path: Path,
    apdus: TokenApduProtection,
    associations: TokenAssociationService,
    suite: int,
) -> None:
    meter = field_meter(kms, tmp_path, 60 + suite, suite)
    opened = associations.open(meter.system_title, 0x30 | suite, actor=ACTOR)
    assert opened.system_title == CLIENT and opened.invocation_counter == 1
    dedicated = open_as_meter(meter, opened.apdu)
    assert len(dedicated) == (32 if suite == 2 else 16)
    ak = meter.keys()["GAK"]
    sc = 0x30 | suite

    result = apdus.protect(
        meter.system_title, GET_REQUEST, sc, form=Form.DED, association=opened.handle, actor=ACTOR
    )
    parsed = parse_ciphered_apdu(result.apdu)
    assert parsed.tag == 0xD0
    assert parsed.invocation_counter == 1  # the dedicated key's own counter
    iv = CLIENT + (1).to_bytes(4, "big")
    expected = AESGCM(dedicated).encrypt(iv, GET_REQUEST, bytes([sc]) + ak)[: len(GET_REQUEST) + 12]
    assert parsed.payload == expected

    general = apdus.protect(
        meter.system_title,
        GET_REQUEST,
        sc,
        form=Form.GENERAL_DED,
        association=opened.handle,
        actor=ACTOR,
    )
    dc = parse_general_ciphering(general.apdu)
    assert (dc.tag, dc.system_title, dc.invocation_counter) == (0xDC, CLIENT, 2)

    iv_m = meter.system_title + (5).to_bytes(4, "big")
    sealed = AESGCM(dedicated).encrypt(iv_m, GET_RESPONSE, bytes([sc]) + ak)
    body = bytes([sc]) + (5).to_bytes(4, "big") + sealed[: len(GET_RESPONSE) + 12]
    answer = bytes([0xD4, len(body)]) + body
    verified = apdus.verify(meter.system_title, answer, association=opened.handle, actor=ACTOR)
    assert (verified.apdu, verified.invocation_counter) == (GET_RESPONSE, 5)
    with pytest.raises(InvocationCounterError):
        apdus.verify(meter.system_title, answer, association=opened.handle, actor=ACTOR)


def test_another_process_uses_the_stored_association_with_disjoint_counters(
    kms: Kms, tmp_path: Path, associations: TokenAssociationService
) -> None:
    meter = field_meter(kms, tmp_path, 70, 0)
    opened = associations.open(meter.system_title, 0x30, actor=ACTOR)
    dedicated = open_as_meter(meter, opened.apdu)
    first = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=10)
    second = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=10)
    try:
        a = first.protect(
            meter.system_title,
            GET_REQUEST,
            0x30,
            form=Form.DED,
            association=opened.handle,
            actor=ACTOR,
        )
        b = second.protect(
            meter.system_title,
            GET_REQUEST,
            0x30,
            form=Form.DED,
            association=opened.handle,
            actor=ACTOR,
        )
        assert (a.invocation_counter, b.invocation_counter) == (1, 11)
        for result in (a, b):
            parsed = parse_ciphered_apdu(result.apdu)
            iv = CLIENT + parsed.invocation_counter.to_bytes(4, "big")
            ak = meter.keys()["GAK"]
            assert parsed.payload == AESGCM(dedicated).encrypt(iv, GET_REQUEST, b"\x30" + ak)[:25]
        ek = second.keys.setups.dedicated_key(
            second.keys.associations.association(opened.handle), actor=ACTOR
        )
        attributes = kms.hsm.attributes(ek)
        assert (attributes["sensitive"], attributes["extractable"]) == (True, False)
        with pytest.raises(HsmError):
            kms.hsm.read_value(ek)
    finally:
        first.close()
        second.close()


def test_closing_wipes_the_key_and_refuses_further_use(
    kms: Kms, tmp_path: Path, apdus: TokenApduProtection, associations: TokenAssociationService
) -> None:
    meter = field_meter(kms, tmp_path, 71, 0)
    opened = associations.open(meter.system_title, 0x30, actor=ACTOR)
    apdus.protect(
        meter.system_title, GET_REQUEST, 0x30, form=Form.DED, association=opened.handle, actor=ACTOR
    )
    associations.close(opened.handle, actor=ACTOR)
    with kms.db.begin() as session:
        row = session.scalars(select(Association)).one()
        assert (row.state, row.wrapped_key, row.binding_mac) == (
            AssociationState.CLOSED,
            None,
            None,
        )
        events = {e.operation: json.loads(e.details) for e in session.scalars(select(AuditEvent))}
    assert events["association.open"]["dedicated_key_on_host"] is True
    assert "association.close" in events
    with pytest.raises(KeyStateError, match="closed"):
        apdus.protect(
            meter.system_title,
            GET_REQUEST,
            0x30,
            form=Form.DED,
            association=opened.handle,
            actor=ACTOR,
        )
    with pytest.raises(KeyStateError, match="already closed"):
        associations.close(opened.handle, actor=ACTOR)


def test_ded_forms_need_the_right_association(
    kms: Kms, tmp_path: Path, apdus: TokenApduProtection, associations: TokenAssociationService
) -> None:
    meter = field_meter(kms, tmp_path, 72, 0)
    other = field_meter(kms, tmp_path, 73, 0)
    opened = associations.open(meter.system_title, 0x30, actor=ACTOR)
    with pytest.raises(InputError) as caught:
        apdus.protect(meter.system_title, GET_REQUEST, 0x30, form=Form.DED, actor=ACTOR)
    assert caught.value.field == "association"
    with pytest.raises(InputError, match="belongs to meter"):
        apdus.protect(
            other.system_title,
            GET_REQUEST,
            0x30,
            form=Form.DED,
            association=opened.handle,
            actor=ACTOR,
        )
    with pytest.raises(InputError, match="unicast"):
        apdus.protect(
            meter.system_title,
            GET_REQUEST,
            0x70,
            form=Form.DED,
            association=opened.handle,
            actor=ACTOR,
        )
    with pytest.raises(NotFoundError):
        apdus.protect(
            meter.system_title, GET_REQUEST, 0x30, form=Form.DED, association="nope", actor=ACTOR
        )
    with pytest.raises(InputError, match="encryption"):
        associations.open(meter.system_title, 0x10, actor=ACTOR)
    with pytest.raises(InputError, match="broadcast"):
        associations.open(meter.system_title, 0x70, actor=ACTOR)
    with pytest.raises(InputError, match="suite"):
        associations.open(meter.system_title, 0x32, actor=ACTOR)
    with kms.db.begin() as session:
        # Refused before any key was made: one association (the first) in the audit trail.
        opened = [
            e for e in session.scalars(select(AuditEvent)) if e.operation == "association.open"
        ]
        assert len(opened) == 1
    # A ded- APDU from the meter without its association is refused before any cryptography.
    with pytest.raises(InputError) as caught:
        apdus.verify(
            meter.system_title, bytes.fromhex("D40D30000000010102030405060708"), actor=ACTOR
        )
    assert caught.value.field == "association"
