"""HLS in the token (issue 4 section 3): mechanism 5 both ways with pyca as the meter, mechanism 6
with the secret in the token (C_DigestKey) or on the host where the profile says so (audited),
mechanism 7 with the head-end's token key and the meter's certificate (pyca as the meter),
replay and failure handling."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from kms.db import AuditEvent, Direction, KeyRole, KeyState
from kms.db import repository as repo
from kms.dlms.hls import Mechanism
from kms.dlms.suites import SecuritySuite
from kms.errors import (
    AuthenticationFailed,
    InputError,
    InvocationCounterError,
    KeyStateError,
    NotFoundError,
)
from kms.pki.profiles import CertificateType
from kms.services.hes.hls import TokenHlsAuthentication, hls_factory
from kms.services.hes.hls_secret import read_hls_secret
from kms.services.hes.keys_in_use import keys_in_use
from kms.services.pki import certificates
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, Pki, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
CTOS = bytes.fromhex("4B35366956616759")
STOC = bytes.fromhex("503677524A323146")


def meter_gmac(
    keys: dict[str, bytes], suite: int, system_title: bytes, ic: int, challenge: bytes
) -> bytes:
    """f(challenge) as the meter computes it, by pyca (notes section 3)."""
    sc = 0x10 | suite
    tag = AESGCM(keys["GUEK"]).encrypt(
        system_title + ic.to_bytes(4, "big"), b"", bytes([sc]) + keys["GAK"] + challenge
    )[:12]
    return bytes([sc]) + ic.to_bytes(4, "big") + tag


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenHlsAuthentication]:
    svc = hls_factory(keys_in_use(kms.hsm, kms.db, kms.config), kms.config)
    try:
        yield svc
    finally:
        svc.close()


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_mechanism_5_both_ways(
    kms: Kms, tmp_path: Path, service: TokenHlsAuthentication, suite: int
) -> None:
    meter = field_meter(kms, tmp_path, 30 + suite, suite)
    keys = meter.keys()
    ctos = service.challenge(16)
    assert len(ctos) == 16 and ctos != service.challenge(16)
    answer = service.answer(meter.system_title, Mechanism.HLS_GMAC, STOC, ctos, actor=ACTOR)
    assert answer.invocation_counter == 1
    assert answer.response == meter_gmac(keys, suite, CLIENT, 1, STOC)
    f_ctos = meter_gmac(keys, suite, meter.system_title, 9, ctos)
    assert (
        service.check(meter.system_title, Mechanism.HLS_GMAC, ctos, STOC, f_ctos, actor=ACTOR) == 9
    )
    # The same answer again is a replay.
    with pytest.raises(InvocationCounterError):
        service.check(meter.system_title, Mechanism.HLS_GMAC, ctos, STOC, f_ctos, actor=ACTOR)


def test_mechanism_5_wrong_answer_fails_and_moves_no_floor(
    kms: Kms, tmp_path: Path, service: TokenHlsAuthentication
) -> None:
    meter = field_meter(kms, tmp_path, 40, 0)
    keys = meter.keys()
    other_challenge = meter_gmac(keys, 0, meter.system_title, 9, STOC)
    with pytest.raises(AuthenticationFailed):
        service.check(
            meter.system_title, Mechanism.HLS_GMAC, CTOS, STOC, other_challenge, actor=ACTOR
        )
    with pytest.raises(InputError) as caught:
        service.check(
            meter.system_title, Mechanism.HLS_GMAC, CTOS, STOC, b"\x30" + bytes(16), actor=ACTOR
        )
    assert caught.value.field == "security_control"
    ref = service._setups.setup(meter.system_title, 0).key(KeyRole.GUEK)
    with kms.db.begin() as session:
        assert repo.invocation_counter(session, ref.id, Direction.RECEIVE) is None


def _secret(kms: Kms, meter: FieldMeter, value: bytes) -> None:
    kms.services.hls_secrets.import_secret(meter.system_title, 0, value, actor="pytest")


@pytest.mark.parametrize(
    ("secret", "host_hash"),
    [(b"Gurux", True), (bytes(range(16)), False), (b"0123456789abcdef01234567", False)],
)
def test_mechanism_6_in_the_token_or_on_the_host_as_the_profile_says(
    kms: Kms,
    tmp_path: Path,
    service: TokenHlsAuthentication,
    secret: bytes,
    host_hash: bool,
) -> None:
    meter = field_meter(kms, tmp_path, 50, 0)
    _secret(kms, meter, secret)
    answer = service.answer(meter.system_title, Mechanism.HLS_SHA256, STOC, CTOS, actor=ACTOR)
    assert answer.invocation_counter is None
    assert (
        answer.response
        == hashlib.sha256(secret + CLIENT + meter.system_title + STOC + CTOS).digest()
    )
    f_ctos = hashlib.sha256(secret + meter.system_title + CLIENT + CTOS + STOC).digest()
    assert (
        service.check(meter.system_title, Mechanism.HLS_SHA256, CTOS, STOC, f_ctos, actor=ACTOR)
        is None
    )
    with pytest.raises(AuthenticationFailed):
        service.check(
            meter.system_title, Mechanism.HLS_SHA256, CTOS, STOC, answer.response, actor=ACTOR
        )
    with kms.db.begin() as session:
        uses = [
            json.loads(e.details)
            for e in session.scalars(select(AuditEvent).where(AuditEvent.operation == "key.use"))
            if "HLS_SECRET" in e.subject
        ]
    assert [u["host_hash"] for u in uses] == [host_hash]


def test_a_new_secret_retires_the_old_and_is_used_at_once(kms: Kms, tmp_path: Path) -> None:
    meter = field_meter(kms, tmp_path, 51, 0)
    _secret(kms, meter, b"first-secret")
    _secret(kms, meter, b"second-secret!")
    with kms.db.begin() as session:
        found = repo.meter_by_system_title(session, meter.system_title)
        assert found is not None
        states = sorted(
            (k.version, k.state) for k in found.setups[0].keys if k.role is KeyRole.HLS_SECRET
        )
    assert states == [(1, KeyState.RETIRED), (2, KeyState.ACTIVE)]
    service = hls_factory(keys_in_use(kms.hsm, kms.db, kms.config), kms.config)
    try:
        answer = service.answer(meter.system_title, Mechanism.HLS_SHA256, STOC, CTOS, actor=ACTOR)
    finally:
        service.close()
    assert (
        answer.response
        == hashlib.sha256(b"second-secret!" + CLIENT + meter.system_title + STOC + CTOS).digest()
    )


def test_no_secret_no_ecdsa_key_and_bad_challenges(
    kms: Kms, tmp_path: Path, service: TokenHlsAuthentication
) -> None:
    meter = field_meter(kms, tmp_path, 52, 1)
    with pytest.raises(NotFoundError, match="HLS_SECRET"):
        service.answer(meter.system_title, Mechanism.HLS_SHA256, STOC, CTOS, actor=ACTOR)
    with pytest.raises(NotFoundError, match="no valid signing key on P-256"):
        service.answer(meter.system_title, Mechanism.HLS_ECDSA, STOC * 4, CTOS * 4, actor=ACTOR)
    with pytest.raises(InputError, match="32 to 64"):
        service.answer(meter.system_title, Mechanism.HLS_ECDSA, STOC, CTOS * 4, actor=ACTOR)
    with pytest.raises(InputError, match="8 to 64 bytes"):
        service.answer(meter.system_title, Mechanism.HLS_GMAC, b"short", CTOS, actor=ACTOR)
    with pytest.raises(InputError):
        service.challenge(7)


def test_the_secret_file_is_hex_and_bounded(tmp_path: Path) -> None:
    good = tmp_path / "s.hex"
    good.write_text("0x4775 7275 78\n")
    assert read_hls_secret(good) == b"Gurux"
    for text, words in (("zz", "hexadecimal"), ("", "1 to 64"), ("00" * 65, "1 to 64")):
        bad = tmp_path / "bad.hex"
        bad.write_text(text)
        with pytest.raises(InputError, match=words):
            read_hls_secret(bad)
    with pytest.raises(InputError, match="cannot read"):
        read_hls_secret(tmp_path / "missing.hex")


def test_hls_refuses_a_pending_meter(
    kms: Kms, tmp_path: Path, service: TokenHlsAuthentication
) -> None:
    from tests.kms_fixtures import meter_row, write_manifest

    manifest = write_manifest(tmp_path / "p.csv", [meter_row(98, 0)])
    kms.services.provisioning.provision(manifest, tmp_path / "p.jsonl", actor="pytest")
    with pytest.raises(KeyStateError, match="PENDING"):
        service.answer(
            bytes.fromhex("4D4D4D0000000062"), Mechanism.HLS_GMAC, STOC, CTOS, actor=ACTOR
        )


# --- mechanism 7: HLS-ECDSA ---------------------------------------------------------------------

ECDSA_CURVES = {1: (ec.SECP256R1(), hashes.SHA256()), 2: (ec.SECP384R1(), hashes.SHA384())}


@pytest.mark.parametrize("suite", [1, 2])
def test_mechanism_7_both_ways(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication, suite: int
) -> None:
    kms = pki.kms
    curve, hash_ = ECDSA_CURVES[suite]
    meter = field_meter(kms, tmp_path, 60 + suite, suite)
    hes = kms.services.end_entities.create(
        actor="pytest", system_title=CLIENT, suite=SecuritySuite(suite),
        certificate_type=CertificateType.DIGITAL_SIGNATURE, purpose="hes-client",
    )  # fmt: skip
    hes_key = x509.load_pem_x509_certificate(str(hes["certificate"]).encode()).public_key()
    meter_key = ec.generate_private_key(curve)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, meter.system_title.hex().upper())])
        )
        .sign(meter_key, hash_)
        .public_bytes(serialization.Encoding.DER)
    )
    kms.services.certificates.issue(
        actor="pytest",
        items=[certificates.CsrItem(csr, "meter.csr", CertificateType.DIGITAL_SIGNATURE)],
    )
    stoc, ctos = bytes(range(32)), bytes(range(100, 148))

    answer = service.answer(meter.system_title, Mechanism.HLS_ECDSA, stoc, ctos, actor=ACTOR)
    assert answer.invocation_counter is None and len(answer.response) == 32 * suite + 32
    half = len(answer.response) // 2
    der = encode_dss_signature(
        int.from_bytes(answer.response[:half], "big"), int.from_bytes(answer.response[half:], "big")
    )
    hes_key.verify(der, CLIENT + meter.system_title + stoc + ctos, ec.ECDSA(hash_))  # type: ignore[call-arg,union-attr]

    signed = meter_key.sign(meter.system_title + CLIENT + ctos + stoc, ec.ECDSA(hash_))
    r, s = decode_dss_signature(signed)
    size = 32 if suite == 1 else 48
    response = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert (
        service.check(meter.system_title, Mechanism.HLS_ECDSA, ctos, stoc, response, actor=ACTOR)
        is None
    )
    for bad in (response[:-1] + bytes([response[-1] ^ 1]), response[:-1], b""):
        with pytest.raises(AuthenticationFailed, match="HLS-ECDSA response did not verify"):
            service.check(meter.system_title, Mechanism.HLS_ECDSA, ctos, stoc, bad, actor=ACTOR)
    with pytest.raises(AuthenticationFailed):  # signed over the other order: not f(CtoS)
        service.check(meter.system_title, Mechanism.HLS_ECDSA, stoc, ctos, response, actor=ACTOR)


def test_mechanism_7_needs_a_valid_meter_certificate(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication
) -> None:
    kms = pki.kms
    meter = field_meter(kms, tmp_path, 70, 1)
    with pytest.raises(NotFoundError, match="no valid signing certificate on P-256"):
        service.check(
            meter.system_title, Mechanism.HLS_ECDSA, CTOS * 4, STOC * 4, bytes(64), actor=ACTOR
        )
