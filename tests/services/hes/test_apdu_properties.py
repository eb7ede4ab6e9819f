"""APDU protection in the token, properties: random APDUs, SC modes and forms against
pyca/cryptography (issue 4).

Two provisioned, confirmed meters (suite 0 and suite 2, keys as the simulated meter learnt
them) serve every example of a test: hypothesis runs the examples inside one call of the
function-scoped fixtures, hence ``HealthCheck.function_scoped_fixture``. What the KMS protects
must be byte for byte what pyca computes with the meter's keys, the client system title and the
IC the KMS reports (and that IC must rise under each key); what pyca ciphers as the meter must
verify back to the APDU. A receive floor only rises, so the ICs of the meter's APDUs come from one
counter that increases across examples, shrinking and replays included.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.dlms.ciphered_apdu import SERVICE_TAGS
from kms.services.hes.protection import (
    ApduResult,
    Form,
    TokenApduProtection,
    apdu_protection_factory,
)
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.interop.oracles import GENERAL_GLO_CIPHERING, build_envelope, glo_tag
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
TAG_LENGTH = 12
SUITES = (0, 2)
#: A, E, A+E with the unicast key; the same with the broadcast key.
MODES = (0x10, 0x20, 0x30, 0x50, 0x60, 0x70)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def pyca_payload(ek: bytes, ak: bytes, sc: int, title: bytes, ic: int, apdu: bytes) -> bytes:
    """What follows SC || IC (notes section 2.3)."""
    iv = title + ic.to_bytes(4, "big")
    if sc & 0x30 == 0x30:
        sealed = AESGCM(ek).encrypt(iv, apdu, bytes([sc]) + ak)
        return sealed[: len(apdu)] + sealed[len(apdu) : len(apdu) + TAG_LENGTH]
    if sc & 0x10:
        return apdu + AESGCM(ek).encrypt(iv, b"", bytes([sc]) + ak + apdu)[:TAG_LENGTH]
    return AESGCM(ek).encrypt(iv, apdu, b"")[: len(apdu)]


@dataclass(frozen=True)
class Case:
    suite: int
    mode: int
    form: Form
    apdu: bytes

    def sc(self) -> int:
        return self.mode | self.suite


@st.composite
def cases(draw: st.DrawFn) -> Case:
    form = draw(st.sampled_from([Form.GLO, Form.GENERAL_GLO]))
    if form is Form.GLO:
        first = draw(st.sampled_from(sorted(SERVICE_TAGS)))
    else:
        first = draw(st.integers(0, 255))
    rest = draw(st.binary(max_size=1999))
    return Case(
        draw(st.sampled_from(SUITES)), draw(st.sampled_from(MODES)), form, bytes([first]) + rest
    )


@pytest.fixture
def meters(kms: Kms, tmp_path: Path) -> dict[int, FieldMeter]:
    return {suite: field_meter(kms, tmp_path, 30 + suite, suite) for suite in SUITES}


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenApduProtection]:
    svc = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=50)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def last_sent() -> dict[tuple[int, bool], int]:
    """The last IC the KMS sent, per (suite, broadcast key), across the examples of a test."""
    return {}


@pytest.fixture
def receive_counter() -> Iterator[int]:
    """ICs for the meters' APDUs: each one 1001 above the last, so that IC + gap rises too."""
    return itertools.count(1, 1001)


def keys_for(meter: FieldMeter, sc: int) -> tuple[bytes, bytes]:
    keys = meter.keys()
    return keys["GBEK" if sc & 0x40 else "GUEK"], keys["GAK"]


@PROPERTY_SETTINGS
@given(case=cases())
def test_protect_is_what_pyca_computes(
    meters: dict[int, FieldMeter],
    service: TokenApduProtection,
    last_sent: dict[tuple[int, bool], int],
    case: Case,
) -> None:
    meter = meters[case.suite]
    sc = case.sc()
    result = service.protect(meter.system_title, case.apdu, sc, form=case.form, actor=ACTOR)
    ic = result.invocation_counter
    ek, ak = keys_for(meter, sc)
    payload = pyca_payload(ek, ak, sc, CLIENT, ic, case.apdu)
    if case.form is Form.GLO:
        expected = build_envelope(glo_tag(case.apdu[0]), None, sc, ic, payload)
    else:
        expected = build_envelope(GENERAL_GLO_CIPHERING, CLIENT, sc, ic, payload)
    assert result == ApduResult(expected, CLIENT, ic)
    # Each key's counter only rises (ICs come from blocks of 50, so blocks are crossed too).
    key = (case.suite, bool(sc & 0x40))
    assert ic > last_sent.get(key, 0)
    last_sent[key] = ic


@PROPERTY_SETTINGS
@given(case=cases(), send_system_title=st.booleans(), gap=st.integers(1, 1000))
def test_verify_returns_what_pyca_protected(
    meters: dict[int, FieldMeter],
    service: TokenApduProtection,
    receive_counter: Iterator[int],
    case: Case,
    send_system_title: bool,
    gap: int,
) -> None:
    meter = meters[case.suite]
    sc = case.sc()
    ic = next(receive_counter) + gap  # strictly above every IC sent before
    ek, ak = keys_for(meter, sc)
    payload = pyca_payload(ek, ak, sc, meter.system_title, ic, case.apdu)
    if case.form is Form.GLO:
        data = build_envelope(glo_tag(case.apdu[0]), None, sc, ic, payload)
    else:
        title = meter.system_title if send_system_title else b""
        data = build_envelope(GENERAL_GLO_CIPHERING, title, sc, ic, payload)
    assert service.verify(
        meter.system_title, data, allow_unauthenticated=True, actor=ACTOR
    ) == ApduResult(case.apdu, meter.system_title, ic, authenticated=bool(sc & 0x10))
