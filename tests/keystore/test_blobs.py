"""docs/architecture.md, invariant 3: a per-meter key at rest is a wrapped blob bound to its row.

:mod:`kms.keystore.blobs` wraps a key under the storage key and MACs the blob, in the token,
together with the row's identity (system title, security setup logical name, role, version).
These tests show, against a real token and the migrated database (SQLite or PostgreSQL):

* sealing then unsealing gives back the *same* key, into a session object (compared by wrapping
  both under one known KEK, since a sensitive key's value cannot be read);
* the blob presented as any other identity, or with any byte changed, raises exactly
  :class:`~kms.errors.InvalidBinding`, never a lower-level error and never a key;
* two stored rows whose blobs are swapped make the provisioning re-run (which re-derives from the
  stored blobs) fail with InvalidBinding and write nothing;
* the blob and its MAC never contain the key's bytes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import keywrap
from sqlalchemy import text

from kms.errors import InvalidBinding
from kms.hsm import KeyUse, SessionKey
from kms.keystore.blobs import KeyIdentity, SealedKey, binding_input, seal, unseal
from kms.services.provisioning.provision import ProvisioningService
from tests.kms_fixtures import Kms, meter_row, write_manifest

TITLE_A = bytes.fromhex("4D4D4D0000000001")
TITLE_B = bytes.fromhex("4D4D4D0000000002")
LN_0 = bytes([0, 0, 43, 0, 0, 255])
LN_1 = bytes([0, 0, 43, 0, 1, 255])
IDENTITY_A = KeyIdentity(TITLE_A, LN_0, "GUEK", 1)
#: Known wrapping key for comparing two session keys: equal keys wrap to equal bytes.
KNOWN_KEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
#: Known keys to seal, distinctive enough that finding them by chance is impossible.
KNOWN_KEYS = {
    16: bytes.fromhex("7E57C0DE7E57C0DE0123456789ABCDEF"),
    32: bytes.fromhex("DEADBEEF" * 4 + "0123456789ABCDEFFEDCBA9876543210"),
}
HEADER_SIZE = 5  # b"KB" || format || storage key version (2 bytes)


def _wrapped_under_known_kek(kms: Kms, key: SessionKey) -> bytes:
    kek = kms.hsm.load_known_key(KNOWN_KEK)
    try:
        return kms.hsm.wrap_key(kek, key)
    finally:
        kms.hsm.destroy(kek)


def _seal_new(kms: Kms, length: int = 16, identity: KeyIdentity = IDENTITY_A) -> Any:
    key = kms.hsm.generate_key(KeyUse.EK, length)
    return key, seal(kms.hsm, kms.root, key, identity)


def _unseal(
    kms: Kms,
    sealed: SealedKey,
    identity: KeyIdentity = IDENTITY_A,
    *,
    blob: bytes | None = None,
    mac: bytes | None = None,
    length: int = 16,
) -> SessionKey:
    return unseal(
        kms.hsm,
        kms.root,
        identity,
        sealed.wrapped_key if blob is None else blob,
        sealed.binding_mac if mac is None else mac,
        KeyUse.EK,
        length,
    )


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _expect_invalid_binding(kms: Kms, sealed: SealedKey, **kwargs: Any) -> InvalidBinding:
    with pytest.raises(InvalidBinding) as caught:
        _unseal(kms, sealed, **kwargs)
    assert type(caught.value) is InvalidBinding  # not a subclass, not InvalidUnwrap
    message = str(caught.value)
    # The message names the row (metadata), never the blob or the MAC.
    assert sealed.wrapped_key.hex() not in message.lower()
    assert sealed.binding_mac.hex() not in message.lower()
    return caught.value


# --- round trip -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 32])
def test_unseal_returns_the_sealed_key(kms: Kms, length: int) -> None:
    key, sealed = _seal_new(kms, length)

    unsealed = _unseal(kms, sealed, length=length)

    assert _wrapped_under_known_kek(kms, unsealed) == _wrapped_under_known_kek(kms, key)
    # ...and that comparison can tell keys apart: a fresh key wraps differently.
    other = kms.hsm.generate_key(KeyUse.EK, length)
    assert _wrapped_under_known_kek(kms, other) != _wrapped_under_known_kek(kms, key)
    # Unsealed into a session object, and a sensitive one.
    attributes = kms.hsm.attributes(unsealed)
    assert attributes["token"] is False
    assert attributes["sensitive"] is True
    # The sealed form records the storage key and its version, in the header too (Vault-style).
    assert sealed.wrapping_key_label == kms.root.storage.label
    assert sealed.wrapping_key_version == kms.root.storage_version
    assert sealed.wrapped_key[:HEADER_SIZE] == b"KB\x01" + kms.root.storage_version.to_bytes(2)
    assert len(sealed.wrapped_key) == HEADER_SIZE + length + 8  # RFC 3394 adds a 64-bit block
    assert len(sealed.binding_mac) == 32  # HMAC-SHA256


# --- another identity -------------------------------------------------------------------------

OTHER_IDENTITIES = {
    "other system title": dataclasses.replace(IDENTITY_A, system_title=TITLE_B),
    "other logical name": dataclasses.replace(IDENTITY_A, logical_name=LN_1),
    "other role": dataclasses.replace(IDENTITY_A, role="GBEK"),
    "other version": dataclasses.replace(IDENTITY_A, version=2),
}


@pytest.mark.parametrize("identity", OTHER_IDENTITIES.values(), ids=OTHER_IDENTITIES.keys())
def test_unseal_as_another_identity_raises_invalid_binding(kms: Kms, identity: KeyIdentity) -> None:
    _key, sealed = _seal_new(kms)

    _expect_invalid_binding(kms, sealed, identity=identity)
    _unseal(kms, sealed)  # still fine for its own identity


def test_the_binding_input_is_unambiguous() -> None:
    # Length prefixes: moving a byte from one field to the next changes the MAC input, so two
    # identities can never share a MAC (no token needed to show it).
    slid = [
        KeyIdentity(TITLE_A + LN_0[:1], LN_0[1:], "GUEK", 1),
        KeyIdentity(TITLE_A[:-1], TITLE_A[-1:] + LN_0, "GUEK", 1),
        KeyIdentity(TITLE_A, LN_0 + b"G", "UEK", 1),
    ]
    identities = [IDENTITY_A, *OTHER_IDENTITIES.values(), *slid]
    inputs = {binding_input(identity, b"blob") for identity in identities}
    inputs |= {binding_input(IDENTITY_A, b"blob" + b"\x00"), binding_input(IDENTITY_A, b"blo")}

    assert len(inputs) == len(identities) + 2


# --- edited bytes -----------------------------------------------------------------------------

BLOB_POSITIONS = {
    "header: magic": 0,
    "header: format": 2,
    "header: storage key version": 4,
    "middle": (HEADER_SIZE + 24) // 2,
    "last": -1,
}


@pytest.mark.parametrize("index", BLOB_POSITIONS.values(), ids=BLOB_POSITIONS.keys())
def test_a_flipped_blob_byte_raises_invalid_binding(kms: Kms, index: int) -> None:
    _key, sealed = _seal_new(kms)

    _expect_invalid_binding(kms, sealed, blob=_flip(sealed.wrapped_key, index))


@pytest.mark.parametrize("index", [0, -1], ids=["first", "last"])
def test_a_flipped_mac_byte_raises_invalid_binding(kms: Kms, index: int) -> None:
    _key, sealed = _seal_new(kms)

    _expect_invalid_binding(kms, sealed, mac=_flip(sealed.binding_mac, index))


def test_a_missing_or_truncated_blob_or_mac_raises_invalid_binding(
    kms: Kms, subtests: pytest.Subtests
) -> None:
    _key, sealed = _seal_new(kms)
    edits: dict[str, dict[str, Any]] = {
        "empty mac": {"mac": b""},
        "zero mac": {"mac": bytes(32)},
        "truncated mac": {"mac": sealed.binding_mac[:16]},
        "empty blob": {"blob": b""},
        "truncated blob": {"blob": sealed.wrapped_key[:-8]},
        "blob of the header alone": {"blob": sealed.wrapped_key[:HEADER_SIZE]},
        "unsealed as a 32-byte key": {"length": 32},
    }
    for name, edit in edits.items():
        with subtests.test(name):
            _expect_invalid_binding(kms, sealed, **edit)


def _remac(kms: Kms, blob: bytes) -> bytes:
    """A valid MAC over an edited blob: what someone holding the binding key could make."""
    return kms.hsm.mac(kms.root.binding, binding_input(IDENTITY_A, blob))


def test_an_edited_blob_with_a_valid_mac_still_raises_invalid_binding(
    kms: Kms, subtests: pytest.Subtests
) -> None:
    # Behind the MAC, two more checks refuse on their own: the header (another format or storage
    # key version, or too short to hold a header) and RFC 3394's integrity check on the wrap
    # (SoftHSM answers that one with a bare CKR_GENERAL_ERROR, which must still come out as
    # InvalidBinding, not HsmError).
    _key, sealed = _seal_new(kms)
    blob = sealed.wrapped_key
    blobs = {
        **{f"header byte {i}": _flip(blob, i) for i in range(HEADER_SIZE)},
        "first wrapped byte": _flip(blob, HEADER_SIZE),
        "middle wrapped byte": _flip(blob, (HEADER_SIZE + len(blob)) // 2),
        "last wrapped byte": _flip(blob, -1),
        "wrap of another length": blob[:-8],
        "3 bytes": blob[:3],
        "empty": b"",
    }
    for name, edited in blobs.items():
        with subtests.test(name):
            _expect_invalid_binding(kms, sealed, blob=edited, mac=_remac(kms, edited))


# --- no key bytes in the blob -----------------------------------------------------------------


def _windows(data: bytes, size: int) -> set[bytes]:
    return {data[i : i + size] for i in range(len(data) - size + 1)}


@pytest.mark.parametrize("length", [16, 32])
def test_a_known_key_seals_without_its_bytes_and_unseals_to_exactly_them(
    kms: Kms, length: int
) -> None:
    value = KNOWN_KEYS[length]
    key = kms.hsm.load_known_key(value)

    sealed = seal(kms.hsm, kms.root, key, IDENTITY_A)

    # Unsealing gives exactly the value back, checked against an independent implementation:
    # pyca's RFC 3394 wrap of the known value under the known KEK.
    unsealed = _unseal(kms, sealed, length=length)
    assert _wrapped_under_known_kek(kms, unsealed) == keywrap.aes_key_wrap(KNOWN_KEK, value)

    stored = sealed.wrapped_key + sealed.binding_mac
    assert value not in stored
    assert value[::-1] not in stored
    # Not even a quarter of the key, at any offset, in either byte order.
    size = length // 4
    assert not _windows(value, size) & _windows(stored, size)
    assert not _windows(value[::-1], size) & _windows(stored, size)
    assert value.hex() not in repr(sealed).lower()
    assert value.hex() not in repr(key).lower()


# --- rows swapped in the database -------------------------------------------------------------

_ROW_SQL = """
SELECT kv.id, kv.wrapped_key, kv.binding_mac
FROM key_version kv
JOIN security_setup s ON s.id = kv.security_setup_id
JOIN meter m ON m.id = s.meter_id
WHERE m.system_title = :title AND s.logical_name = :ln AND kv.role = :role AND kv.version = 1
"""

Row = tuple[bytes, bytes, str]  # system title, logical name, role

SWAPS: dict[str, tuple[Row, Row, tuple[str, ...]]] = {
    "two meters, same role": (
        (bytes.fromhex("4D4D4D0000000001"), LN_0, "GUEK"),
        (bytes.fromhex("4D4D4D0000000002"), LN_0, "GUEK"),
        ("wrapped_key", "binding_mac"),
    ),
    "one setup, two roles": (
        (bytes.fromhex("4D4D4D0000000001"), LN_0, "GUEK"),
        (bytes.fromhex("4D4D4D0000000001"), LN_0, "GBEK"),
        ("wrapped_key", "binding_mac"),
    ),
    "one meter, two setups": (
        (bytes.fromhex("4D4D4D0000000002"), LN_0, "KEK"),
        (bytes.fromhex("4D4D4D0000000002"), LN_1, "KEK"),
        ("wrapped_key", "binding_mac"),
    ),
    "two meters, blob only": (
        (bytes.fromhex("4D4D4D0000000001"), LN_1, "GAK"),
        (bytes.fromhex("4D4D4D0000000002"), LN_1, "GAK"),
        ("wrapped_key",),
    ),
}


def _swap(kms: Kms, first: Row, second: Row, columns: tuple[str, ...]) -> None:
    with kms.db.engine.begin() as conn:
        rows = []
        for title, ln, role in (first, second):
            found = conn.execute(text(_ROW_SQL), {"title": title, "ln": ln, "role": role}).one()
            rows.append(
                (found[0], {"wrapped_key": bytes(found[1]), "binding_mac": bytes(found[2])})
            )
        (id_1, values_1), (id_2, values_2) = rows
        assert values_1 != values_2
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        for row_id, values in ((id_1, values_2), (id_2, values_1)):
            conn.execute(
                text(f"UPDATE key_version SET {assignments} WHERE id = :id"),  # noqa: S608
                {"id": row_id, **{c: values[c] for c in columns}},
            )


def _state(kms: Kms) -> dict[str, Any]:
    with kms.db.engine.connect() as conn:
        return {
            "audit": conn.execute(text("SELECT count(*), max(seq) FROM audit_event")).one(),
            "meters": conn.execute(
                text("SELECT count(*) FROM meter WHERE state = 'PENDING'")
            ).one(),
            "keys": sorted(
                (row[0], bytes(row[1]), bytes(row[2]))
                for row in conn.execute(
                    text("SELECT id, wrapped_key, binding_mac FROM key_version")
                )
            ),
        }


def _last_event(kms: Kms) -> tuple[str, str, str]:
    with kms.db.engine.connect() as conn:
        operation, outcome, details = conn.execute(
            text("SELECT operation, outcome, details FROM audit_event ORDER BY seq DESC LIMIT 1")
        ).one()
    return operation, outcome, json.loads(details)["error"]


@pytest.fixture
def provisioned(kms: Kms, tmp_path: Path) -> tuple[ProvisioningService, Path, str]:
    """Two suite-0 meters with setups 0 and 1, provisioned; returns the service, manifest, lines."""
    manifest = write_manifest(
        tmp_path / "manifest.csv", [meter_row(1, 0, "0;1"), meter_row(2, 0, "0;1")]
    )
    service = kms.services.provisioning
    report = service.provision(manifest, tmp_path / "first.jsonl", actor="pytest")
    assert (report.meters, report.generated, report.keys) == (2, 2, 16)
    return service, manifest, (tmp_path / "first.jsonl").read_text(encoding="utf-8")


def test_swapped_rows_fail_the_rerun_with_invalid_binding_and_write_nothing(
    kms: Kms,
    provisioned: tuple[ProvisioningService, Path, str],
    tmp_path: Path,
    subtests: pytest.Subtests,
) -> None:
    # Each swap is undone after its check (a swap is its own inverse), and the re-run then
    # succeeds again: the swap, nothing else, is what made it fail.
    service, manifest, first_lines = provisioned
    out = tmp_path / "rerun.jsonl"

    # The baseline: untouched, the re-run re-derives the same keys from the stored blobs, so its
    # key_transfer APDUs are byte-for-byte those of the first run ("never a second set").
    report = service.provision(manifest, out, actor="pytest")
    assert (report.generated, report.repeated) == (0, 2)
    assert out.read_text(encoding="utf-8") == first_lines
    out.unlink()

    for name, (first, second, columns) in SWAPS.items():
        with subtests.test(name):
            _swap(kms, first, second, columns)
            try:
                before = _state(kms)
                files_before = sorted(p.name for p in tmp_path.iterdir())

                with pytest.raises(InvalidBinding) as caught:
                    service.provision(manifest, out, actor="pytest")

                assert type(caught.value) is InvalidBinding
                assert not out.exists()
                assert sorted(p.name for p in tmp_path.iterdir()) == files_before  # no temp file
                after = _state(kms)
                # No meter and no key changed; the one new audit event records the failure.
                assert (after["meters"], after["keys"]) == (before["meters"], before["keys"])
                assert after["audit"][0] == before["audit"][0] + 1
                assert _last_event(kms) == ("meter.provision", "failure", "crypto.invalid_binding")
                # The error names one of the two rows by its metadata, and nothing else.
                message = str(caught.value)
                assert any(
                    title.hex().upper() in message and f" {role} v1" in message
                    for title, _ln, role in (first, second)
                ), message
            finally:
                _swap(kms, first, second, columns)

    service.provision(manifest, out, actor="pytest")
    assert out.read_text(encoding="utf-8") == first_lines
