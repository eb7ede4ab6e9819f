"""ECDSA signatures made in the token verify with gurux-dlms's own ECDSA (``GXEcdsa``, P-256).

gurux-dlms 1.0.203 hashes and verifies in pure Python with its own curve arithmetic, so it is an
oracle that shares nothing with the token or pyca. Its caveats (notes sections 9 and 11):
``GXPublicKey.fromRawBytes`` needs the 65-byte ``04 || x || y`` (a 64-byte ``x || y`` gives a key
that fails), and only P-256 works (``verify`` tests ``scheme == P256`` twice and so raises for
P-384). Public keys are read here by gurux's own SubjectPublicKeyInfo parser
(``GXPublicKey.fromDer``) from the token's export, and from the certificate as ``04 || x || y``
(gurux's ``GXx509Certificate`` cannot read the KMS's certificates: it raises ``TypeError`` on any
critical keyUsage, which the DLMS profile requires).

Signed in the token: digests of several messages with a KMS end-entity key (the head-end's
signing key) and with the suite 1 issuing CA's key (``Hsm.sign_digest``); the issuing CA's
signature on a certificate it issued; and the head-end's HLS-ECDSA f(StoC).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gurux_dlms.ecdsa.GXEcdsa import GXEcdsa
from gurux_dlms.ecdsa.GXPublicKey import GXPublicKey

from kms.db import AuthorityRole
from kms.db import pki_repository as pki_repo
from kms.dlms.hls import Mechanism
from kms.dlms.suites import SecuritySuite
from kms.hsm import TokenKey
from kms.pki.profiles import CertificateType
from kms.services.hes.hls import hls_factory
from kms.services.hes.keys_in_use import keys_in_use
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import ACTOR, Kms, Pki, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
MESSAGES = [
    b"",
    b"\x00",
    b"DLMS",
    bytes(range(256)),
    b"\xff" * 1000,
    CLIENT + bytes.fromhex("4D4D4D0000BC614E") + bytes(32) + bytes(range(48)),
]


def _head_end(kms: Kms, suite: int) -> tuple[TokenKey, bytes]:
    """The head-end's signing key in the token and its certificate (DER)."""
    made = kms.services.end_entities.create(
        actor="pytest", system_title=CLIENT, suite=SecuritySuite(suite),
        certificate_type=CertificateType.DIGITAL_SIGNATURE, purpose="hes-client",
    )  # fmt: skip
    cert = x509.load_pem_x509_certificate(str(made["certificate"]).encode())
    return TokenKey(str(made["key_label"]), "private"), cert.public_bytes(
        serialization.Encoding.DER
    )


def _issuing_ca_key(kms: Kms) -> TokenKey:
    with kms.db.begin() as session:
        authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, 1)
        assert authority is not None and authority.curve == "P-256"
        return TokenKey(authority.key_label, "private")


def _gurux_key_from_token(kms: Kms, key: TokenKey) -> GXPublicKey:
    """gurux's own parse of the SubjectPublicKeyInfo the token exports."""
    spki = kms.hsm.public_key_der(key)
    return GXPublicKey.fromDer(base64.b64encode(spki).decode())


def _point(certificate_der: bytes) -> bytes:
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


@pytest.mark.parametrize("signer", ["end-entity", "issuing-ca"])
def test_token_signatures_verify_in_gurux(pki: Pki, signer: str) -> None:
    kms = pki.kms
    if signer == "end-entity":
        key, certificate = _head_end(kms, 1)
    else:
        key, certificate = (
            _issuing_ca_key(kms),
            kms.services.certificates.chain(SecuritySuite(1))[0],
        )
    from_token = _gurux_key_from_token(kms, key)
    from_certificate = GXPublicKey.fromRawBytes(_point(certificate))
    assert bytes(from_token.rawValue) == bytes(from_certificate.rawValue)
    for message in MESSAGES:
        signature = kms.hsm.sign_digest(key, hashlib.sha256(message).digest())
        assert len(signature) == 64
        for public in (from_token, from_certificate):
            assert GXEcdsa(public).verify(signature, message)
            assert not GXEcdsa(public).verify(_flip(signature, 63), message)  # s
            assert not GXEcdsa(public).verify(_flip(signature, 0), message)  # r
            assert not GXEcdsa(public).verify(signature, message + b"\x00")
            if message:
                assert not GXEcdsa(public).verify(signature, _flip(message, len(message) // 2))


def test_a_signature_by_another_token_key_does_not_verify(pki: Pki) -> None:
    kms = pki.kms
    head_end, _certificate = _head_end(kms, 1)
    ca = _issuing_ca_key(kms)
    message = MESSAGES[-1]
    signature = kms.hsm.sign_digest(ca, hashlib.sha256(message).digest())
    assert GXEcdsa(_gurux_key_from_token(kms, ca)).verify(signature, message)
    assert not GXEcdsa(_gurux_key_from_token(kms, head_end)).verify(signature, message)


def test_the_issuing_cas_certificate_signature_verifies_in_gurux(pki: Pki) -> None:
    """The issuing CA signed the head-end's certificate in the token (ecdsa-with-SHA256, DER
    r and s): gurux checks that signature over the tbsCertificate bytes."""
    kms = pki.kms
    _key, der = _head_end(kms, 1)
    certificate = x509.load_der_x509_certificate(der)
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == "sha256"
    r, s = decode_dss_signature(certificate.signature)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    issuer = GXPublicKey.fromRawBytes(_point(kms.services.certificates.chain(SecuritySuite(1))[0]))
    assert GXEcdsa(issuer).verify(raw, certificate.tbs_certificate_bytes)
    assert not GXEcdsa(issuer).verify(raw, _flip(certificate.tbs_certificate_bytes, 100))
    # The head-end's own key did not sign it.
    assert not GXEcdsa(GXPublicKey.fromRawBytes(_point(der))).verify(
        raw, certificate.tbs_certificate_bytes
    )


def test_the_head_ends_hls_ecdsa_answer_verifies_in_gurux(pki: Pki, tmp_path: Path) -> None:
    kms = pki.kms
    meter = field_meter(kms, tmp_path, 70, 1)
    _key, der = _head_end(kms, 1)
    stoc, ctos = bytes(range(32)), bytes(range(64, 112))
    service = hls_factory(keys_in_use(kms.hsm, kms.db, kms.config), kms.config)
    try:
        f_stoc = service.answer(
            meter.system_title, Mechanism.HLS_ECDSA, stoc, ctos, actor=ACTOR
        ).response
    finally:
        service.close()
    public = GXPublicKey.fromRawBytes(_point(der))
    assert GXEcdsa(public).verify(f_stoc, CLIENT + meter.system_title + stoc + ctos)
    assert not GXEcdsa(public).verify(f_stoc, meter.system_title + CLIENT + ctos + stoc)
    assert not GXEcdsa(public).verify(_flip(f_stoc, 40), CLIENT + meter.system_title + stoc + ctos)


def test_gurux_cannot_check_p384_so_suite_2_rests_on_pyca(pki: Pki) -> None:
    """The caveat that keeps suite 2 out of this file: gurux reads the P-384 key but its
    ``verify`` refuses the scheme. pyca verifies the same token signature."""
    kms = pki.kms
    key, der = _head_end(kms, 2)
    message = MESSAGES[-1]
    signature = kms.hsm.sign_digest(key, hashlib.sha384(message).digest())
    assert len(signature) == 96
    public = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    r, s = int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
    public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA384()))
    gurux_key = _gurux_key_from_token(kms, key)
    assert len(bytes(gurux_key.rawValue)) == 97
    with pytest.raises(ValueError, match="Invalid private key scheme"):
        GXEcdsa(gurux_key).verify(signature, message)
