"""Key agreement (security setup method 3, Ephemeral Unified Model) with pyca as the meter: the
KMS's ephemeral keys wait in the token, signed with its own key; the meter's answer is checked
against its certificate; the agreed keys, derived in the token, equal pyca's and are stored as
new PENDING versions; forged, late or repeated answers are refused and nothing is stored."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from kms.db import AgreementState, AuthorityRole, KeyRole, KeyState
from kms.db import pki_repository as pki_repo
from kms.db import repository as repo
from kms.dlms.key_transfer import KeyId
from kms.dlms.suites import SecuritySuite
from kms.errors import AuthenticationFailed, ConflictError, InputError, NotFoundError
from kms.hsm import TokenKey
from kms.pki.profiles import CertificateType
from kms.services.common import peers
from kms.services.pki import certificates
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import Pki, meter_csr, provision_meter, revoke_ca

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
CURVES = {1: (ec.SECP256R1(), hashes.SHA256(), 32), 2: (ec.SECP384R1(), hashes.SHA384(), 48)}
#: AlgorithmID (notes section 5): 60 85 74 05 08 03 nn; GCM for EKs and the AK, WRAP for the KEK.
ALGORITHM = {(1, False): "00", (2, False): "01", (1, True): "02", (2, True): "03"}


class PycaMeter:
    """The meter's side of method 3, written from the notes with pyca only."""

    def __init__(self, system_title: bytes, suite: int, hes_certificate: x509.Certificate) -> None:
        self.system_title = system_title
        self.suite = suite
        self.curve, self.hash, self.size = CURVES[suite]
        self.signing_key = ec.generate_private_key(self.curve)
        self.hes_key = hes_certificate.public_key()
        self.agreed: dict[int, bytes] = {}

    def csr(self) -> bytes:
        return (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name(
                    [x509.NameAttribute(x509.NameOID.COMMON_NAME, self.system_title.hex().upper())]
                )
            )
            .sign(self.signing_key, self.hash)
            .public_bytes(serialization.Encoding.DER)
        )

    def answer(self, request: bytes) -> bytes:
        """Verify each entry's signature, agree, and answer C7 01 C1 00 01 00 <array>."""
        entries = _entries(request, self.size)
        out = []
        for key_id, point, signature in entries:
            half = self.size
            der = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            self.hes_key.verify(der, bytes([key_id]) + point, ec.ECDSA(self.hash))  # type: ignore[call-arg,union-attr]
            ours = ec.generate_private_key(self.curve)
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.curve, b"\x04" + point)
            z = ours.exchange(ec.ECDH(), peer)
            algorithm = bytes.fromhex("608574050803" + ALGORITHM[(self.suite, key_id == 3)])
            length = 16 if self.suite == 1 else 32
            self.agreed[key_id] = ConcatKDFHash(
                self.hash, length, algorithm + CLIENT + self.system_title
            ).derive(z)
            mine = ours.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )[1:]
            r, s = decode_dss_signature(
                self.signing_key.sign(bytes([key_id]) + mine, ec.ECDSA(self.hash))
            )
            sig = r.to_bytes(self.size, "big") + s.to_bytes(self.size, "big")
            out.append((key_id, mine + sig))
        body = bytes([0x01, len(out)]) + b"".join(
            bytes([0x02, 0x02, 0x16, k, 0x09, 0x81, len(d)]) + d for k, d in out
        )
        return bytes.fromhex("C701C1000100") + body


def _entries(request: bytes, size: int) -> list[tuple[int, bytes, bytes]]:
    """The entries of a key_agreement action-request, read by hand (not by kms.dlms)."""
    assert request[:3] == bytes.fromhex("C301C1") and request[3:5] == b"\x00\x40"
    assert request[11] == 3 and request[12] == 1 and request[13] == 0x01
    count, at, found = request[14], 15, []
    for _ in range(count):
        assert request[at : at + 3] == b"\x02\x02\x16"
        key_id = request[at + 3]
        assert request[at + 4 : at + 6] == b"\x09\x81"
        length = request[at + 6]
        data = request[at + 7 : at + 7 + length]
        found.append((key_id, data[: 2 * size], data[2 * size :]))
        at += 7 + length
    assert at == len(request)
    return found


def _kcv(key: bytes) -> str:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - a KCV
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex().upper()


def _ready(pki: Pki, tmp_path: Path, index: int, suite: int) -> PycaMeter:
    kms = pki.kms
    title = provision_meter(kms, tmp_path, index, suite)
    hes = kms.services.end_entities.create(
        actor="pytest", system_title=CLIENT, suite=SecuritySuite(suite),
        certificate_type=CertificateType.DIGITAL_SIGNATURE, purpose="hes-client",
    )  # fmt: skip
    meter = PycaMeter(
        title, suite, x509.load_pem_x509_certificate(str(hes["certificate"]).encode())
    )
    kms.services.certificates.issue(
        actor="pytest",
        items=[certificates.CsrItem(meter.csr(), "meter.csr", CertificateType.DIGITAL_SIGNATURE)],
    )
    return meter


def _versions(pki: Pki, title: bytes) -> dict[tuple[str, int], KeyState]:
    with pki.kms.db.begin() as session:
        meter = repo.meter_by_system_title(session, title)
        assert meter is not None
        return {(k.role.value, k.version): k.state for k in meter.setups[0].keys}


def _agreement_state(pki: Pki, handle: str) -> AgreementState:
    with pki.kms.db.begin() as session:
        row = pki_repo.lock_key_agreement(session, handle)
        assert row is not None
        return row.state


ALL = [KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY, KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY,
       KeyId.AUTHENTICATION_KEY, KeyId.MASTER_KEY]  # fmt: skip


@pytest.mark.parametrize("suite", [1, 2])
def test_agreed_keys_equal_the_meters_and_become_new_pending_versions(
    pki: Pki, tmp_path: Path, suite: int
) -> None:
    kms = pki.kms
    meter = _ready(pki, tmp_path, 1, suite)
    started = kms.services.key_agreements.start(meter.system_title, ALL, actor="pytest")
    labels = [f"kms-agree-{started.handle}-{k}" for k in range(4)]
    assert all(kms.hsm.has_token_key(TokenKey(label, "private")) for label in labels)
    attrs = kms.hsm.attributes(TokenKey(labels[0], "private"))
    assert attrs["sensitive"] and not attrs["extractable"]

    info = kms.services.key_agreements.complete(
        started.handle, meter.answer(started.apdu), actor="pytest"
    )
    roles = {0: "GUEK", 1: "GBEK", 2: "GAK", 3: "KEK"}
    assert {k["role"]: k["kcv"] for k in info["keys"]} == {  # type: ignore[attr-defined]
        roles[key_id]: _kcv(key) for key_id, key in meter.agreed.items()
    }
    assert info["kdf"] == kms.hsm.profile.kdf.replace("digest_key", "token-digest")
    versions = _versions(pki, meter.system_title)
    for role in roles.values():
        assert versions[(role, 1)] is KeyState.RETIRED
        assert versions[(role, 2)] is KeyState.PENDING
    assert not any(kms.hsm.has_token_key(TokenKey(label, "private")) for label in labels)
    assert _agreement_state(pki, started.handle) is AgreementState.COMPLETED
    kms.services.provisioning.confirm([meter.system_title], actor="pytest")
    versions = _versions(pki, meter.system_title)
    assert {versions[(role, 2)] for role in roles.values()} == {KeyState.ACTIVE}
    with pytest.raises(ConflictError, match="is completed"):
        kms.services.key_agreements.complete(started.handle, b"\x01\x00", actor="pytest")


def test_a_forged_answer_is_refused_and_the_agreement_stays_pending(
    pki: Pki, tmp_path: Path
) -> None:
    kms = pki.kms
    meter = _ready(pki, tmp_path, 2, 1)
    started = kms.services.key_agreements.start(
        meter.system_title, [KeyId.AUTHENTICATION_KEY], actor="pytest"
    )
    answer = bytearray(meter.answer(started.apdu))
    answer[-1] ^= 0x01  # the meter's signature
    with pytest.raises(AuthenticationFailed, match="GAK ephemeral key does not verify"):
        kms.services.key_agreements.complete(started.handle, bytes(answer), actor="pytest")
    assert _agreement_state(pki, started.handle) is AgreementState.PENDING
    assert (KeyRole.GAK.value, 2) not in _versions(pki, meter.system_title)
    # The real answer still completes it.
    kms.services.key_agreements.complete(started.handle, meter.answer(started.apdu), actor="pytest")


def test_answers_that_do_not_fit_the_request_are_named(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    meter = _ready(pki, tmp_path, 3, 1)
    started = kms.services.key_agreements.start(
        meter.system_title,
        [KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY, KeyId.AUTHENTICATION_KEY],
        actor="pytest",
    )
    answer = meter.answer(started.apdu)
    one_entry = bytes.fromhex("C701C10001000101") + answer[8 : 8 + 7 + 128]
    with pytest.raises(InputError, match="lacks AUTHENTICATION_KEY"):
        kms.services.key_agreements.complete(started.handle, one_entry, actor="pytest")
    with pytest.raises(InputError, match="refused the action"):
        kms.services.key_agreements.complete(
            started.handle, bytes.fromhex("C701C10300"), actor="pytest"
        )
    with pytest.raises(InputError):
        kms.services.key_agreements.complete(started.handle, answer[:-3], actor="pytest")
    assert _agreement_state(pki, started.handle) is AgreementState.PENDING


def test_expiry_and_cancel_destroy_the_ephemeral_keys(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    meter = _ready(pki, tmp_path, 4, 2)
    late = kms.services.key_agreements.start(
        meter.system_title,
        [KeyId.MASTER_KEY],
        lifetime=datetime.timedelta(seconds=-1),
        actor="pytest",
    )
    with pytest.raises(ConflictError, match="expired"):
        kms.services.key_agreements.complete(late.handle, meter.answer(late.apdu), actor="pytest")
    other = kms.services.key_agreements.start(
        meter.system_title, [KeyId.MASTER_KEY], actor="pytest"
    )
    # Starting another one swept the expired agreement away.
    assert _agreement_state(pki, late.handle) is AgreementState.CANCELLED
    assert not kms.hsm.has_token_key(TokenKey(f"kms-agree-{late.handle}-3", "private"))
    kms.services.key_agreements.cancel(other.handle, actor="pytest")
    assert not kms.hsm.has_token_key(TokenKey(f"kms-agree-{other.handle}-3", "private"))
    with pytest.raises(ConflictError, match="cancelled"):
        kms.services.key_agreements.cancel(other.handle, actor="pytest")


def test_what_key_agreement_needs_is_named(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    suite0 = provision_meter(kms, tmp_path, 5, 0)
    with pytest.raises(InputError, match="suite 0"):
        kms.services.key_agreements.start(suite0, ALL, actor="pytest")
    bare = provision_meter(kms, tmp_path, 6, 1)
    with pytest.raises(NotFoundError, match="no valid signing key on P-256"):
        kms.services.key_agreements.start(bare, ALL, actor="pytest")
    kms.services.end_entities.create(
        actor="pytest", system_title=CLIENT, suite=SecuritySuite(1),
        certificate_type=CertificateType.DIGITAL_SIGNATURE, purpose="hes-client",
    )  # fmt: skip
    with pytest.raises(NotFoundError, match="no valid signing certificate"):
        kms.services.key_agreements.start(bare, ALL, actor="pytest")
    csr = meter_csr(bare, ec.SECP256R1())[0]
    item = certificates.CsrItem(csr, "c", CertificateType.DIGITAL_SIGNATURE)
    kms.services.certificates.issue(actor="pytest", items=[item])
    kms.services.provisioning.confirm([bare], actor="pytest")
    with pytest.raises(ConflictError, match="ACTIVE"):
        kms.services.key_agreements.start(bare, ALL, actor="pytest")
    with pytest.raises(InputError, match="once"):
        kms.services.key_agreements.start(bare, [], actor="pytest")
    with pytest.raises(NotFoundError, match="no key agreement"):
        kms.services.key_agreements.cancel("00" * 16, actor="pytest")


def test_a_meter_certificate_under_a_revoked_issuing_ca_is_out_of_use(
    pki: Pki, tmp_path: Path
) -> None:
    kms = pki.kms
    meter = _ready(pki, tmp_path, 7, 1)
    with kms.db.begin() as session:
        issuing = pki_repo.active_authority(session, AuthorityRole.ISSUING, 1)
        assert issuing is not None
        serial = issuing.certificate.serial
    revoke_ca(pki, serial)
    # Both the meter's certificate and the head-end's own key hang under the revoked CA.
    with pytest.raises(NotFoundError, match="no valid signing"):
        kms.services.key_agreements.start(meter.system_title, [KeyId.MASTER_KEY], actor="pytest")
    with (
        kms.db.begin() as session,
        pytest.raises(NotFoundError, match="no valid signing certificate"),
    ):
        peers.peer_public_key(
            session, meter.system_title, CertificateType.DIGITAL_SIGNATURE, "P-256"
        )
