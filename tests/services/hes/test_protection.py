"""APDU protection in the token (issue 4 sections 2 and 5): pyca/cryptography as the oracle.

Each test provisions real meters through the provisioning service, lets the simulated meter
(pyca only) apply the key_transfer APDUs to learn its keys, confirms them, and then checks the
KMS's ciphered APDUs with pyca -- and the KMS's verification of what pyca ciphered as the meter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms.db import Direction, KeyRole, KeyState, KeyVersion
from kms.db import repository as repo
from kms.dlms.ciphered_apdu import parse_ciphered_apdu, parse_general_ciphering
from kms.errors import (
    InputError,
    InvalidTag,
    InvocationCounterError,
    InvocationCounterExhausted,
    KeyStateError,
    NotFoundError,
    UnsupportedMechanism,
)
from kms.keystore.counters import FIRST_INVOCATION_COUNTER
from kms.services.hes.protection import Form, TokenApduProtection, apdu_protection_factory
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
GET_REQUEST = bytes.fromhex("C0010000080000010000FF0200")
GET_RESPONSE = bytes.fromhex("C4010000090C07E60B1D0716222A00FF8880")


def oracle_protect(
    ek: bytes, ak: bytes, sc: int, system_title: bytes, ic: int, apdu: bytes
) -> bytes:
    """What follows SC || IC, by pyca (notes section 2.3)."""
    iv = system_title + ic.to_bytes(4, "big")
    if sc & 0x30 == 0x30:
        sealed = AESGCM(ek).encrypt(iv, apdu, bytes([sc]) + ak)
        return sealed[: len(apdu)] + sealed[len(apdu) : len(apdu) + 12]
    if sc & 0x10:
        return apdu + AESGCM(ek).encrypt(iv, b"", bytes([sc]) + ak + apdu)[:12]
    return AESGCM(ek).encrypt(iv, apdu, b"")[: len(apdu)]


def oracle_glo(ek: bytes, ak: bytes, sc: int, system_title: bytes, ic: int, apdu: bytes) -> bytes:
    """A glo- APDU as the meter would send it."""
    body = bytes([sc]) + ic.to_bytes(4, "big") + oracle_protect(ek, ak, sc, system_title, ic, apdu)
    return bytes([apdu[0] + 8, len(body)]) + body


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenApduProtection]:
    svc = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def meter0(kms: Kms, tmp_path: Path) -> FieldMeter:
    return field_meter(kms, tmp_path, 1, 0)


@pytest.mark.parametrize("suite", [0, 1, 2])
@pytest.mark.parametrize("sc_mode", [0x10, 0x20, 0x30])
def test_protect_glo_is_what_pyca_computes(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, suite: int, sc_mode: int
) -> None:
    meter = field_meter(kms, tmp_path, 10 + suite, suite)
    keys = meter.keys()
    sc = sc_mode | suite
    result = service.protect(meter.system_title, GET_REQUEST, sc, actor=ACTOR)
    assert result.system_title == CLIENT
    assert result.invocation_counter == FIRST_INVOCATION_COUNTER
    parsed = parse_ciphered_apdu(result.apdu)
    assert parsed.tag == 0xC8
    assert parsed.security_control.to_byte() == sc
    expected = oracle_protect(keys["GUEK"], keys["GAK"], sc, CLIENT, 1, GET_REQUEST)
    assert parsed.payload == expected


@pytest.mark.parametrize("suite", [0, 1, 2])
@pytest.mark.parametrize("sc_mode", [0x10, 0x20, 0x30])
def test_verify_what_the_meter_protected(
    kms: Kms, tmp_path: Path, service: TokenApduProtection, suite: int, sc_mode: int
) -> None:
    meter = field_meter(kms, tmp_path, 20 + suite, suite)
    keys = meter.keys()
    sc = sc_mode | suite
    response = oracle_glo(keys["GUEK"], keys["GAK"], sc, meter.system_title, 77, GET_RESPONSE)
    result = service.verify(
        meter.system_title, response, allow_unauthenticated=sc_mode == 0x20, actor=ACTOR
    )
    assert (result.apdu, result.system_title, result.invocation_counter) == (
        GET_RESPONSE,
        meter.system_title,
        77,
    )


def test_broadcast_uses_the_gbek(meter0: FieldMeter, service: TokenApduProtection) -> None:
    keys = meter0.keys()
    result = service.protect(meter0.system_title, GET_REQUEST, 0x70, actor=ACTOR)
    parsed = parse_ciphered_apdu(result.apdu)
    assert parsed.payload == oracle_protect(
        keys["GBEK"], keys["GAK"], 0x70, CLIENT, result.invocation_counter, GET_REQUEST
    )
    # Its counter is the GBEK's own: it starts afresh.
    assert result.invocation_counter == FIRST_INVOCATION_COUNTER


def test_general_glo_form_carries_the_client_system_title(
    meter0: FieldMeter, service: TokenApduProtection
) -> None:
    keys = meter0.keys()
    data_notification = bytes.fromhex("0F0000000100090102")
    result = service.protect(
        meter0.system_title, data_notification, 0x30, form=Form.GENERAL_GLO, actor=ACTOR
    )
    parsed = parse_general_ciphering(result.apdu)
    assert (parsed.tag, parsed.system_title) == (0xDB, CLIENT)
    assert parsed.payload == oracle_protect(
        keys["GUEK"], keys["GAK"], 0x30, CLIENT, parsed.invocation_counter, data_notification
    )
    # And the meter's general-glo-ciphering, with and without its system title, verifies.
    for ic, title in ((5, meter0.system_title), (6, b"")):
        payload = oracle_protect(
            keys["GUEK"], keys["GAK"], 0x30, meter0.system_title, ic, data_notification
        )
        body = bytes([0x30]) + ic.to_bytes(4, "big") + payload
        apdu = bytes([0xDB, len(title)]) + title + bytes([len(body)]) + body
        assert service.verify(meter0.system_title, apdu, actor=ACTOR).apdu == data_notification


def test_invocation_counters_increase_and_blocks_are_disjoint_across_services(
    kms: Kms, meter0: FieldMeter
) -> None:
    first = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=10)
    second = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=10)
    try:
        ics_a = [
            first.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
        ]
        ics_b = [
            second.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
        ]
        ics_a += [
            first.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
        ]
        assert ics_a == [1, 2]
        assert ics_b == [11]
        with kms.db.begin() as session:
            ref = first.keys.setups.setup(meter0.system_title, 0).key(KeyRole.GUEK)
            assert repo.invocation_counter(session, ref.id, Direction.SEND) == 21
    finally:
        first.close()
        second.close()


def test_a_lost_block_is_skipped_not_reused(kms: Kms, meter0: FieldMeter) -> None:
    crashed = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=100)
    assert (
        crashed.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter == 1
    )
    crashed.close()  # the process "dies": ICs 2..100 are never handed out
    later = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=100)
    try:
        assert (
            later.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
            == 101
        )
    finally:
        later.close()


def test_exhausted_counters_tell_the_operator_to_renew(kms: Kms, meter0: FieldMeter) -> None:
    service = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=5)
    try:
        ref = service.keys.setups.setup(meter0.system_title, 0).key(KeyRole.GUEK)
        with kms.db.begin() as session:
            row = repo.lock_invocation_counter(session, ref.id, Direction.SEND, 1)
            row.next_free = 0xFFFFFFFD
        ics = [
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
        ]
        ics.append(
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
        )
        assert ics == [0xFFFFFFFD, 0xFFFFFFFE]
        with pytest.raises(InvocationCounterExhausted, match="renew the key"):
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    finally:
        service.close()


def _floor(kms: Kms, service: TokenApduProtection, meter: FieldMeter) -> int | None:
    ref = service.keys.setups.setup(meter.system_title, 0).key(KeyRole.GUEK)
    with kms.db.begin() as session:
        return repo.invocation_counter(session, ref.id, Direction.RECEIVE)


def test_replayed_and_lower_counters_are_refused_with_the_exception_response(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    keys = meter0.keys()
    at_10 = oracle_glo(keys["GUEK"], keys["GAK"], 0x30, meter0.system_title, 10, GET_RESPONSE)
    at_9 = oracle_glo(keys["GUEK"], keys["GAK"], 0x30, meter0.system_title, 9, GET_RESPONSE)
    service.verify(meter0.system_title, at_10, actor=ACTOR)
    assert _floor(kms, service, meter0) == 11
    for replay in (at_10, at_9):
        with pytest.raises(InvocationCounterError) as caught:
            service.verify(meter0.system_title, replay, actor=ACTOR)
        assert caught.value.expected == 11
        assert caught.value.exception_response == bytes.fromhex("D80106 0000000B")
    # Another process that never saw the floor refuses it too, under the row lock.
    fresh = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        with pytest.raises(InvocationCounterError):
            fresh.verify(meter0.system_title, at_10, actor=ACTOR)
    finally:
        fresh.close()
    assert _floor(kms, service, meter0) == 11


def test_a_wrong_tag_is_refused_and_the_floor_does_not_move(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    keys = meter0.keys()
    good = oracle_glo(keys["GUEK"], keys["GAK"], 0x30, meter0.system_title, 50, GET_RESPONSE)
    for position in (len(good) - 1, 7, len(good) - 13):
        bad = bytearray(good)
        bad[position] ^= 0x01
        with pytest.raises(InvalidTag) as caught:
            service.verify(meter0.system_title, bytes(bad), actor=ACTOR)
        assert caught.value.exception_response == bytes.fromhex("D80105")
    assert _floor(kms, service, meter0) is None
    # Wrong AK (the meter's AAD differs): refused as well.
    wrong_ak = oracle_glo(keys["GUEK"], bytes(16), 0x30, meter0.system_title, 50, GET_RESPONSE)
    with pytest.raises(InvalidTag):
        service.verify(meter0.system_title, wrong_ak, actor=ACTOR)
    assert service.verify(meter0.system_title, good, actor=ACTOR).invocation_counter == 50


@pytest.mark.parametrize(
    ("sc", "error", "field"),
    [
        (0x31, InputError, "security_control"),  # the meter uses suite 0
        (0x33, InputError, None),  # reserved suite
        (0x00, InputError, "sc"),  # no protection asked for
        (0xB0, UnsupportedMechanism, None),  # compression
        (0x130, InputError, "sc"),  # not a byte
    ],
)
def test_bad_security_control_on_protect(
    meter0: FieldMeter,
    service: TokenApduProtection,
    sc: int,
    error: type[Exception],
    field: str | None,
) -> None:
    with pytest.raises(error) as caught:
        service.protect(meter0.system_title, GET_REQUEST, sc, actor=ACTOR)
    if field is not None:
        assert isinstance(caught.value, InputError)
        assert caught.value.field == field


def test_unknown_meter_setup_and_pending_meter(
    kms: Kms, tmp_path: Path, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    with pytest.raises(NotFoundError, match="no meter with system title 4D4D4D00000000FF"):
        service.protect(bytes.fromhex("4D4D4D00000000FF"), GET_REQUEST, 0x30, actor=ACTOR)
    with pytest.raises(NotFoundError, match=r"no security setup 0\.0\.43\.0\.3\.255"):
        service.protect(meter0.system_title, GET_REQUEST, 0x30, setup=3, actor=ACTOR)
    from tests.kms_fixtures import meter_row, write_manifest

    manifest = write_manifest(tmp_path / "p.csv", [meter_row(99, 0)])
    kms.services.provisioning.provision(manifest, tmp_path / "p.jsonl", actor="pytest")
    with pytest.raises(KeyStateError, match="PENDING"):
        service.protect(bytes.fromhex("4D4D4D0000000063"), GET_REQUEST, 0x30, actor=ACTOR)


@pytest.mark.parametrize("state", [KeyState.REVOKED, KeyState.RETIRED])
def test_a_key_revoked_under_a_running_service_is_evicted_and_refused(
    kms: Kms, meter0: FieldMeter, state: KeyState
) -> None:
    service = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=1)
    try:
        service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
        ref = service.keys.setups.setup(meter0.system_title, 0).key(KeyRole.GUEK)
        with kms.db.begin() as session:
            version = session.get(KeyVersion, ref.id)
            assert version is not None
            version.state = state
        with pytest.raises(KeyStateError, match=state.value):
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
        # Evicted: the next attempt reloads the setup and finds no ACTIVE GUEK.
        with pytest.raises(KeyStateError, match=f"GUEK of meter .* is {state.value}"):
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    finally:
        service.close()


@pytest.mark.parametrize(
    ("apdu", "field", "exception_response"),
    [
        ("", "apdu", None),
        ("C81E3001234567", "length", None),  # truncated
        ("C81F3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B", "length", None),
        ("C01E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B", "tag", "D80202"),
        ("C80D30012345670102030405060708", "payload", None),  # shorter than the tag
    ],
)
def test_malformed_apdus_name_the_field(
    kms: Kms,
    meter0: FieldMeter,
    service: TokenApduProtection,
    apdu: str,
    field: str,
    exception_response: str | None,
) -> None:
    with pytest.raises(InputError) as caught:
        service.verify(meter0.system_title, bytes.fromhex(apdu), actor=ACTOR)
    assert caught.value.field == field
    expected = bytes.fromhex(exception_response) if exception_response else None
    assert caught.value.exception_response == expected
    assert _floor(kms, service, meter0) is None


def test_the_encryption_key_in_use_cannot_be_read_from_the_token(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    from kms.errors import HsmError

    service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    ref = service.keys.setups.setup(meter0.system_title, 0).key(KeyRole.GUEK)
    ek = service.keys.setups.encryption_key(ref, actor=ACTOR)
    attributes = kms.hsm.attributes(ek)
    assert attributes["sensitive"] is True
    assert attributes["extractable"] is False
    assert attributes["token"] is False
    with pytest.raises(HsmError):
        kms.hsm.read_value(ek)


def test_no_client_system_title_is_a_config_error(kms: Kms, meter0: FieldMeter) -> None:
    import dataclasses

    from kms.errors import ConfigError

    config = dataclasses.replace(kms.config, client_system_title=None)
    service = apdu_protection_factory(kms.hsm, kms.db, config)
    with pytest.raises(ConfigError, match="KMS_CLIENT_SYSTEM_TITLE"):
        service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)


def test_an_encryption_only_apdu_is_refused_unless_the_policy_allows_it(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    keys = meter0.keys()
    # Made with no key at all: an encryption-only APDU carries no tag, so anyone can forge one,
    # and deciphering it would hand out the keystream of an IC the meter has not used yet.
    forged = bytes.fromhex("CC1220FFFFFFFE") + bytes(13)
    with pytest.raises(InputError, match="encryption only") as caught:
        service.verify(meter0.system_title, forged, actor=ACTOR)
    assert caught.value.field == "security_control"
    assert _floor(kms, service, meter0) is None
    # Where the meter's policy is encryption only, the caller says so; the IC is then used up
    # like any accepted one (never deciphered twice), and the result says it was not
    # authenticated.
    genuine = oracle_glo(keys["GUEK"], keys["GAK"], 0x20, meter0.system_title, 5, GET_RESPONSE)
    result = service.verify(meter0.system_title, genuine, allow_unauthenticated=True, actor=ACTOR)
    assert (result.apdu, result.authenticated) == (GET_RESPONSE, False)
    assert result.to_json()["authenticated"] is False
    assert _floor(kms, service, meter0) == 6
    with pytest.raises(InvocationCounterError):
        service.verify(meter0.system_title, genuine, allow_unauthenticated=True, actor=ACTOR)
    authenticated = oracle_glo(
        keys["GUEK"], keys["GAK"], 0x30, meter0.system_title, 9, GET_RESPONSE
    )
    assert (
        "authenticated"
        not in service.verify(meter0.system_title, authenticated, actor=ACTOR).to_json()
    )


def test_a_sender_whose_key_the_cache_destroyed_prepares_again(kms: Kms, tmp_path: Path) -> None:
    import dataclasses

    config = dataclasses.replace(kms.config, key_cache_size=2)
    service = apdu_protection_factory(kms.hsm, kms.db, config)
    meters = [field_meter(kms, tmp_path, 90 + i, 0) for i in range(2)]
    try:
        # With room for one meter's EK and AK, each meter pushes the other's out of the cache
        # (and the token): the prepared sender notices and unwraps again, never a dead handle.
        for _ in range(3):
            for meter in meters:
                keys = meter.keys()
                result = service.protect(meter.system_title, GET_REQUEST, 0x30, actor=ACTOR)
                ic = result.invocation_counter
                assert parse_ciphered_apdu(result.apdu).payload == oracle_protect(
                    keys["GUEK"], keys["GAK"], 0x30, CLIENT, ic, GET_REQUEST
                )
    finally:
        service.close()


def test_the_next_block_is_reserved_ahead_and_ics_stay_consecutive(
    kms: Kms, meter0: FieldMeter
) -> None:
    service = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=16)
    try:
        ics = [
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
            for _ in range(30)
        ]
        ref = service.keys.setups.setup(meter0.system_title, 0).key(KeyRole.GUEK)
    finally:
        service.close()  # waits for a reservation under way
    assert ics == list(range(1, 31))
    with kms.db.begin() as session:
        # Blocks 1-16 and 17-32 were used; 33-48 was reserved ahead when 4 of 17-32 were left.
        assert repo.invocation_counter(session, ref.id, Direction.SEND) == 49
        from sqlalchemy import select

        from kms.db import AuditEvent

        reserved = [
            json.loads(e.details)
            for e in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.operation == "ic.reserve")
                .order_by(AuditEvent.seq)
            )
        ]
    assert [(r["first"], r["last"]) for r in reserved] == [(1, 16), (17, 32), (33, 48)]
    # A new process starts after everything reserved, ahead or not.
    later = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=16)
    try:
        assert (
            later.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR).invocation_counter
            == 49
        )
    finally:
        later.close()


def test_after_a_lost_token_session_keys_are_unwrapped_again(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    keys = meter0.keys()
    first = service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    kms.hsm._reopen()  # what a SessionHandleInvalid does: every session object is gone
    second = service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    assert second.invocation_counter == first.invocation_counter + 1
    assert parse_ciphered_apdu(second.apdu).payload == oracle_protect(
        keys["GUEK"], keys["GAK"], 0x30, CLIENT, second.invocation_counter, GET_REQUEST
    )


def test_senders_go_with_their_keys(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    (sender,) = service._glo._senders.values()
    prefix = sender.protection._prefix
    assert prefix is not None and any(prefix)
    service.keys.setups.evict(meter0.system_title)
    assert not service._glo._senders
    assert not any(prefix)  # the sender's copy of SC || AK was zeroised


def test_a_revoked_gak_stops_sending_at_the_next_block(kms: Kms, meter0: FieldMeter) -> None:
    service = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=1)
    try:
        service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
        ref = service.keys.setups.setup(meter0.system_title, 0).key(KeyRole.GAK)
        with kms.db.begin() as session:
            version = session.get(KeyVersion, ref.id)
            assert version is not None
            version.state = KeyState.REVOKED
        with pytest.raises(KeyStateError, match="GAK v1 is REVOKED"):
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    finally:
        service.close()


def test_keys_that_leave_the_cache_before_use_are_never_used(kms: Kms, meter0: FieldMeter) -> None:
    import dataclasses

    from kms.errors import ConfigError

    # An idle time shorter than one fetch: the first key is gone when the second is in.
    config = dataclasses.replace(kms.config, key_cache_idle_seconds=1e-9)
    service = apdu_protection_factory(kms.hsm, kms.db, config)
    try:
        with pytest.raises(ConfigError, match="key_cache_idle_seconds"):
            service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    finally:
        service.close()


def _store_pending_successor(kms: Kms, meter: FieldMeter, role: KeyRole) -> int:
    """A new key stored as the next PENDING version of ``role`` in setup 0, as key agreement and
    renewal store one (sealed under the storage key, bound to its row); its version."""
    from kms.hsm import KeyUse
    from kms.keystore.blobs import KeyIdentity, seal

    with kms.db.begin() as session:
        stored = repo.meter_by_system_title(session, meter.system_title)
        assert stored is not None
        (setup,) = [s for s in stored.setups if s.logical_name[4] == 0]
        version = 1 + max(k.version for k in setup.keys if k.role is role)
        identity = KeyIdentity(meter.system_title, setup.logical_name, role.value, version)
        length = 16 if stored.suite == 0 else 32
        fresh = kms.hsm.generate_key(KeyUse.EK, length)
        try:
            sealed = seal(kms.hsm, kms.root, fresh, identity)
            kcv = kms.hsm.check_value(fresh)
        finally:
            kms.hsm.destroy(fresh)
        repo.add(
            session,
            KeyVersion(
                security_setup_id=setup.id,
                role=role,
                version=version,
                state=KeyState.PENDING,
                key_length=length,
                wrapped_key=sealed.wrapped_key,
                wrapping_key_label=sealed.wrapping_key_label,
                wrapping_key_version=sealed.wrapping_key_version,
                binding_mac=sealed.binding_mac,
                check_value=kcv,
            ),
        )
    return version


def test_an_active_and_a_pending_version_are_held_side_by_side(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    keys = meter0.keys()
    pending_version = _store_pending_successor(kms, meter0, KeyRole.GUEK)
    setup = service.keys.setups.setup(meter0.system_title, 0)
    active, pending = setup.active(KeyRole.GUEK), setup.pending(KeyRole.GUEK)
    assert active is not None and pending is not None
    assert (active.identity.version, pending.identity.version) == (1, pending_version)
    assert setup.key(KeyRole.GUEK) is active  # what protect and verify use
    assert setup.pending(KeyRole.GBEK) is None and setup.active(KeyRole.GBEK) is not None
    # protect still ciphers under the ACTIVE GUEK, and counts under it.
    result = service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)
    assert parse_ciphered_apdu(result.apdu).payload == oracle_protect(
        keys["GUEK"], keys["GAK"], 0x30, CLIENT, result.invocation_counter, GET_REQUEST
    )
    with kms.db.begin() as session:
        assert repo.invocation_counter(session, active.id, Direction.SEND) is not None
        assert repo.invocation_counter(session, pending.id, Direction.SEND) is None
    # And what the meter sends under its ACTIVE GUEK verifies.
    response = oracle_glo(keys["GUEK"], keys["GAK"], 0x30, meter0.system_title, 3, GET_RESPONSE)
    assert service.verify(meter0.system_title, response, actor=ACTOR).apdu == GET_RESPONSE


def test_a_role_with_only_a_pending_version_is_refused(
    kms: Kms, meter0: FieldMeter, service: TokenApduProtection
) -> None:
    with kms.db.begin() as session:
        stored = repo.meter_by_system_title(session, meter0.system_title)
        assert stored is not None
        for version in stored.setups[0].keys:
            if version.role is KeyRole.GUEK:
                version.state = KeyState.RETIRED
    _store_pending_successor(kms, meter0, KeyRole.GUEK)
    setup = service.keys.setups.setup(meter0.system_title, 0)
    assert setup.active(KeyRole.GUEK) is None and setup.pending(KeyRole.GUEK) is not None
    with pytest.raises(KeyStateError, match=r"GUEK of meter .* is PENDING"):
        service.protect(meter0.system_title, GET_REQUEST, 0x30, actor=ACTOR)


def test_each_call_is_audited_as_its_own_caller(kms: Kms, tmp_path: Path) -> None:
    from sqlalchemy import select

    from kms.db import AuditEvent

    meters = [field_meter(kms, tmp_path, 95 + i, 0) for i in range(2)]
    service = apdu_protection_factory(kms.hsm, kms.db, kms.config, ic_block_size=1)
    try:
        # One process, two callers: each one's key unwraps and counter blocks name it.
        service.protect(meters[0].system_title, GET_REQUEST, 0x30, actor="alice")
        service.protect(meters[1].system_title, GET_REQUEST, 0x30, actor="bob")
        service.protect(meters[0].system_title, GET_REQUEST, 0x30, actor="bob")
    finally:
        service.close()
    with kms.db.begin() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.operation.in_(["key.use", "ic.reserve"]))
            .order_by(AuditEvent.seq)
        ).all()
        seen = [(e.actor, e.operation) for e in events]
    assert seen == [
        ("alice", "key.use"),
        ("alice", "key.use"),
        ("alice", "ic.reserve"),
        ("bob", "key.use"),
        ("bob", "key.use"),
        ("bob", "ic.reserve"),
        ("bob", "ic.reserve"),  # the keys of the first meter were unwrapped already
    ]
