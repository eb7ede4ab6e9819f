"""The CA key backup ceremonies (kms/services/pki/ca_backup.py): a trusted backup key built from
officers' components, CA keys backed up only on M-of-N approval and only under that key, a backup
file that holds no key byte but the wrapped blob, and a restore into another token that signs for
the CA; refusals write nothing.

The wrapping key's value is known to these tests (they make its components), so pyca can open a
backup and show what is in it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from sqlalchemy import func, select

from kms.config import Config, Pin
from kms.db import Approval
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.errors import (
    ApprovalError,
    ConflictError,
    HsmError,
    InputError,
    InvalidUnwrap,
    NotFoundError,
    PinIncorrect,
)
from kms.hsm import Hsm, TokenKey
from kms.pki import ecdsa
from kms.services.pki import ca_backup, key_components
from kms.services.pki.ca_backup import CaKeyBackup
from tests.conftest import TestToken
from tests.kms_fixtures import Kms, Pki, services_for
from tests.spare_token import SpareToken, spare_token


@pytest.fixture
def spare(kms_config: Config) -> Iterator[SpareToken]:
    with spare_token(kms_config) as found:
        yield found


@dataclasses.dataclass
class Components:
    values: list[bytes]

    def buffers(self) -> list[bytearray]:
        return [bytearray(v) for v in self.values]

    @property
    def key(self) -> bytes:
        return bytes(a ^ b for a, b in zip(*self.values, strict=True))


@pytest.fixture
def components() -> Components:
    return Components([secrets.token_bytes(32), secrets.token_bytes(32)])


@pytest.fixture
def backup_key(pki: Pki, token: TestToken, components: Components) -> ca_backup.BackupKeyReport:
    """The trusted backup key, made from ``components`` through the ceremony."""
    kms = pki.kms
    return kms.services.ca_backup.create_backup_key(
        actor="pytest", so_pin=Pin(token.so_pin), components=components.buffers()
    )


def _events(kms: Kms, operation: str) -> list[dict[str, Any]]:
    with kms.db.begin() as session:
        return [
            json.loads(e.details) | {"subject": e.subject}
            for e in repo.audit_events(session)
            if e.operation == operation
        ]


def _kcv(kms: Kms, label: str = ca_backup.DEFAULT_BACKUP_KEY_LABEL) -> str:
    """The check value the officers saw printed for the backup key (``label``)."""
    if not kms.hsm.has_token_key(TokenKey(label)):
        return "000000"
    return kms.hsm.check_value(TokenKey(label)).hex().upper()


def _approvals_stored(kms: Kms) -> int:
    with kms.db.begin() as session:
        return int(session.scalar(select(func.count()).select_from(Approval)) or 0)


def _backup(pki: Pki, out: Path, ca: str = "root-v1", **kwargs: Any) -> ca_backup.BackupReport:
    kms = pki.kms
    kcv = _kcv(kms, kwargs.get("wrapping_key_label", ca_backup.DEFAULT_BACKUP_KEY_LABEL))
    request, files = pki.officers.approve(kms, "backup-ca-key", {"ca": ca, "wrapping_key_kcv": kcv})
    return kms.services.ca_backup.backup_ca_key(
        actor="pytest", request=request, approvals=files, ca_name=ca, out=out, **kwargs
    )


def _restore(
    pki: Pki, hsm: Hsm, backup: CaKeyBackup, components: list[bytearray]
) -> ca_backup.BackupReport:
    kms = pki.kms
    request, files = pki.officers.approve(kms, "restore-ca-key", {"ca": backup.ca})
    return services_for(kms, hsm=hsm).ca_backup.restore_ca_key(
        actor="pytest", request=request, approvals=files, backup=backup, components=components
    )


def _authority(kms: Kms, name: str) -> tuple[str, bytes, str]:
    with kms.db.begin() as session:
        authority = pki_repo.authority_by_name(session, name)
        assert authority is not None
        return authority.key_label, authority.certificate.der, authority.curve


# --- the backup key -------------------------------------------------------------------------------


def test_the_backup_key_ceremony_is_audited_with_check_values_only(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, components: Components
) -> None:
    assert backup_key.kcv == key_components.check_value(components.key)
    assert backup_key.component_kcvs == [key_components.check_value(v) for v in components.values]
    (event,) = _events(pki.kms, "ca.backup_key.create")
    assert event["subject"] == ca_backup.DEFAULT_BACKUP_KEY_LABEL
    assert event["kcv"] == backup_key.kcv and event["components"] == 2
    text = json.dumps(event).lower()
    assert all(v.hex() not in text for v in [*components.values, components.key])


def test_the_backup_key_is_made_once_per_label(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, token: TestToken, components: Components
) -> None:
    kms = pki.kms
    with pytest.raises(ConflictError, match="already holds"):
        kms.services.ca_backup.create_backup_key(
            actor="pytest", so_pin=Pin(token.so_pin), components=components.buffers()
        )
    assert len(_events(kms, "ca.backup_key.create")) == 1


def test_a_wrong_so_pin_makes_no_key_and_no_record(
    kms: Kms, token: TestToken, components: Components
) -> None:
    buffers = components.buffers()
    with pytest.raises(PinIncorrect):
        kms.services.ca_backup.create_backup_key(
            actor="pytest", so_pin=Pin("x" + token.so_pin), components=buffers
        )
    assert not any(any(b) for b in buffers), "the components are zeroised"
    assert not kms.hsm.has_token_key(TokenKey(ca_backup.DEFAULT_BACKUP_KEY_LABEL))
    assert _events(kms, "ca.backup_key.create") == []
    assert kms.hsm.has_token_key(TokenKey("kms-storage-v1"))  # still logged in


# --- backup ---------------------------------------------------------------------------------------


def test_the_backup_file_holds_no_key_byte_but_the_wrapped_blob(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, components: Components, tmp_path: Path
) -> None:
    kms = pki.kms
    out = tmp_path / "root.backup.json"
    report = _backup(pki, out)
    data = out.read_bytes()
    document = json.loads(data)
    label, der, curve = _authority(kms, "root-v1")
    assert document["format"] == ca_backup.BACKUP_FORMAT
    assert (document["ca"], document["curve"], document["key_label"]) == ("root-v1", curve, label)
    assert (
        pyca_x509.load_pem_x509_certificate(document["certificate"].encode()).public_bytes(
            serialization.Encoding.DER
        )
        == der
    )
    assert document["wrapping_key_kcv"] == backup_key.kcv == report.wrapping_key_kcv
    assert document["mechanism"] == "AES_KEY_WRAP_PAD"
    assert document["approved_by"] == ["alice", "bob"] and document["created_at"]

    # What the blob holds: the CA's private key, which appears nowhere else in the file.
    padded = aes_key_unwrap_with_padding(components.key, bytes.fromhex(document["wrapped_key"]))
    private = serialization.load_der_private_key(padded[: padded[1] + 2], None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == kms.hsm.public_key_der(TokenKey(label, "private"))
    scalar = private.private_numbers().private_value.to_bytes(48, "big").lstrip(b"\0")
    rest = json.dumps({k: v for k, v in document.items() if k != "wrapped_key"}).encode()
    for secret in (scalar, components.key, *components.values):
        assert secret not in data
        assert secret.hex().encode() not in data.lower() and secret.hex().encode() not in rest

    (event,) = _events(kms, "ca.backup")
    assert event["subject"] == "root-v1" and event["wrapping_key_kcv"] == backup_key.kcv
    assert event["file_sha256"] == hashlib.sha256(data).hexdigest() == report.file_sha256
    assert document["wrapped_key"] not in json.dumps(event)


def _nothing_written(kms: Kms, out: Path, stored: int) -> None:
    assert not out.exists()
    assert _events(kms, "ca.backup") == []
    assert _approvals_stored(kms) == stored


@pytest.mark.parametrize(
    ("ca", "names", "match"),
    [
        ("root-v1", ["alice"], "needs 2 officer approvals"),
        ("suite1-v1", None, "approves backup-ca-key"),
    ],
    ids=["too-few-approvals", "approvals-for-another-ca"],
)
def test_a_backup_not_approved_as_run_writes_nothing(
    pki: Pki,
    backup_key: ca_backup.BackupKeyReport,
    tmp_path: Path,
    ca: str,
    names: list[str] | None,
    match: str,
) -> None:
    kms = pki.kms
    stored = _approvals_stored(kms)
    request, files = pki.officers.approve(
        kms, "backup-ca-key", {"ca": ca, "wrapping_key_kcv": _kcv(kms)}, names
    )
    out = tmp_path / "root.backup.json"
    with pytest.raises(ApprovalError, match=match):
        kms.services.ca_backup.backup_ca_key(
            actor="pytest", request=request, approvals=files, ca_name="root-v1", out=out
        )
    _nothing_written(kms, out, stored)


def test_the_token_refuses_a_backup_under_a_key_that_is_not_trusted(
    pki: Pki, tmp_path: Path
) -> None:
    kms = pki.kms
    stored = _approvals_stored(kms)
    kms.hsm.create_transport_key("kms-untrusted", b"u", None, 32)  # WRAP, not CKA_TRUSTED
    out = tmp_path / "root.backup.json"
    with pytest.raises(HsmError, match="CKA_TRUSTED"):
        _backup(pki, out, wrapping_key_label="kms-untrusted")
    _nothing_written(kms, out, stored)


def test_an_unknown_ca_or_an_existing_file_writes_nothing(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, tmp_path: Path
) -> None:
    kms = pki.kms
    stored = _approvals_stored(kms)
    with pytest.raises(NotFoundError, match="no CA named"):
        _backup(pki, tmp_path / "x.json", ca="suite9-v1")
    taken = tmp_path / "taken.json"
    taken.write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        _backup(pki, taken)
    assert taken.read_text() == "mine"
    _nothing_written(kms, tmp_path / "x.json", stored)


# --- restore --------------------------------------------------------------------------------------


@pytest.fixture
def suite1_backup(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, tmp_path: Path
) -> ca_backup.CaKeyBackup:
    out = tmp_path / "suite1.backup.json"
    _backup(pki, out, ca="suite1-v1")
    return ca_backup.load_backup(out.read_bytes(), str(out))


def test_a_backup_restores_into_another_token_that_then_signs_for_the_ca(
    pki: Pki, suite1_backup: CaKeyBackup, components: Components, spare: SpareToken
) -> None:
    kms = pki.kms
    label, der, curve = _authority(kms, "suite1-v1")
    target = Hsm(spare.config)
    try:
        report = _restore(pki, target, suite1_backup, components.buffers())
        assert (report.ca, report.key_label, report.curve) == ("suite1-v1", label, curve)
        key = TokenKey(label, "private")
        attributes = target.attributes(key)
        assert attributes["sensitive"] and attributes["wrap_with_trusted"]
        certificate = pyca_x509.load_der_x509_certificate(der)
        assert target.public_key_der(key) == certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        data = b"a CRL, say, signed in the replacement token"
        signature = ecdsa.sign(target.signer(key, curve), data)
        public = certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        hash_ = hashes.SHA256() if curve == "P-256" else hashes.SHA384()  # the key's own curve
        public.verify(signature, data, ec.ECDSA(hash_))
    finally:
        target.close()
    (event,) = _events(kms, "ca.restore")
    assert event["subject"] == "suite1-v1" and event["token"] == spare.label
    assert event["wrapping_key_kcv"] == suite1_backup.wrapping_key_kcv


def _restore_refused(
    pki: Pki,
    target: Hsm,
    backup: CaKeyBackup,
    components: list[bytearray],
    error: type[Exception],
    match: str,
) -> None:
    label = _authority(pki.kms, backup.ca)[0]
    stored = _approvals_stored(pki.kms)
    with pytest.raises(error, match=match):
        _restore(pki, target, backup, components)
    assert not any(any(c) for c in components), "the components are zeroised"
    assert not target.has_token_key(TokenKey(label, "private"))
    assert not target.has_token_key(TokenKey(label, "public"))
    assert _events(pki.kms, "ca.restore") == []
    assert _approvals_stored(pki.kms) == stored


def test_wrong_components_fail_with_invalid_unwrap_and_restore_nothing(
    pki: Pki, suite1_backup: CaKeyBackup, components: Components, spare: SpareToken
) -> None:
    wrong = Components([components.values[0], secrets.token_bytes(32)])
    target = Hsm(spare.config)
    try:
        _restore_refused(
            pki, target, suite1_backup, wrong.buffers(), InvalidUnwrap, "do not rebuild"
        )
        # A file whose check value was made to match the wrong key: the token's RFC 5649
        # integrity check refuses the blob.
        forged = dataclasses.replace(
            suite1_backup, wrapping_key_kcv=key_components.check_value(wrong.key)
        )
        _restore_refused(pki, target, forged, wrong.buffers(), InvalidUnwrap, "integrity check")
        assert len(target.random(8)) == 8
    finally:
        target.close()


def test_a_backup_with_another_certificate_is_refused(
    pki: Pki, suite1_backup: CaKeyBackup, components: Components, spare: SpareToken
) -> None:
    other = _authority(pki.kms, "root-v1")[1]
    swapped = dataclasses.replace(suite1_backup, certificate_der=other)
    target = Hsm(spare.config)
    try:
        _restore_refused(
            pki, target, swapped, components.buffers(), InputError, "not the one this database"
        )
    finally:
        target.close()


def test_a_token_that_holds_the_key_is_not_restored_into(
    pki: Pki, suite1_backup: CaKeyBackup, components: Components
) -> None:
    with pytest.raises(ConflictError, match="already holds the key"):
        _restore(pki, pki.kms.hsm, suite1_backup, components.buffers())
    assert _events(pki.kms, "ca.restore") == []


# --- key components and backup files --------------------------------------------------------------


def test_a_component_file_round_trips_and_its_check_value_catches_a_typo() -> None:
    value = secrets.token_bytes(32)
    text = key_components.component_file(value)
    assert key_components.load_component(text, "a.hex") == value
    digits = value.hex().upper()
    typo = text.replace(digits.encode(), (("0" if digits[0] != "0" else "1") + digits[1:]).encode())
    with pytest.raises(InputError, match="check value") as caught:
        key_components.load_component(typo, "a.hex")
    assert digits[1:] not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"abcd\n", "64 hex digits, not 4"),
        (b"zz" * 32, "not hexadecimal"),
        (b"\xff" * 64, "not ASCII"),
    ],
)
def test_a_bad_component_file_is_named_without_its_content(text: bytes, match: str) -> None:
    with pytest.raises(InputError, match=match) as caught:
        key_components.load_component(text, "a.hex")
    assert "a.hex" in str(caught.value) and "zz" not in str(caught.value)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([b"\x01" * 32], "2 to 9 key components, not 1"),
        ([b"\x01" * 32, b"\x01" * 32], "the same"),
        ([b"\x01" * 32, bytes(32)], "all zeros"),
        ([b"\x01" * 32, b"\x03" * 32, b"\x02" * 32], "XOR to zero"),
    ],
)
def test_components_that_make_no_key_are_refused(values: list[bytes], match: str) -> None:
    with pytest.raises(InputError, match=match):
        key_components.combine([bytearray(v) for v in values])


def test_a_backup_file_is_checked_when_read(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, tmp_path: Path
) -> None:
    out = tmp_path / "root.backup.json"
    _backup(pki, out)
    document = json.loads(out.read_bytes())
    cases = {
        b"not json": "not JSON",
        json.dumps({**document, "format": "x"}).encode(): "format",
        json.dumps({**document, "wrapped_key": "zz"}).encode(): "must be hex",
        json.dumps({**document, "curve": "P-256"}).encode(): "certificate's key is P-384",
        json.dumps({k: v for k, v in document.items() if k != "key_label"}).encode(): "key_label",
    }
    for data, match in cases.items():
        with pytest.raises(InputError, match=match):
            ca_backup.load_backup(data, "backup.json")


def test_a_backup_under_another_wrapping_key_than_approved_writes_nothing(
    pki: Pki, backup_key: ca_backup.BackupKeyReport, tmp_path: Path
) -> None:
    kms = pki.kms
    stored = _approvals_stored(kms)
    # The officers approved a backup under the key of check value ABCDEF, not this token's.
    request, files = pki.officers.approve(
        kms, "backup-ca-key", {"ca": "root-v1", "wrapping_key_kcv": "ABCDEF"}
    )
    out = tmp_path / "root.backup.json"
    with pytest.raises(ApprovalError, match="wrapping_key_kcv"):
        kms.services.ca_backup.backup_ca_key(
            actor="pytest", request=request, approvals=files, ca_name="root-v1", out=out
        )
    _nothing_written(kms, out, stored)
