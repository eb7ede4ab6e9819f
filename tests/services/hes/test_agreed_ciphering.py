"""general-ciphering (0xDD) with an agreed key, C(1e,1s) and C(0e,2s), both ways, with pyca as
the meter: the KMS's ephemeral and static keys in the token, the meter's from its certificates;
forged signatures, bad tags and replays refused."""

from __future__ import annotations

import json
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from kms.db import repository as repo
from kms.dlms.suites import SecuritySuite
from kms.errors import AuthenticationFailed, InputError, InvalidTag, InvocationCounterError
from kms.pki.profiles import CertificateType
from kms.services.hes.protection import Form, TokenApduProtection, apdu_protection_factory
from kms.services.pki import certificates
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import ACTOR, FieldMeter, Pki, field_meter, meter_csr

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
GET_REQUEST = bytes.fromhex("C001C1000800000100FF0200")
CURVES = {1: (ec.SECP256R1(), hashes.SHA256(), 32), 2: (ec.SECP384R1(), hashes.SHA384(), 48)}


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


def _raw(signature: bytes, size: int) -> bytes:
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _octets(value: bytes) -> bytes:
    return (bytes([len(value)]) if len(value) < 128 else bytes([0x81, len(value)])) + value


class Parties:
    """The KMS with its signing and key-agreement keys, and a pyca meter with its own."""

    def __init__(self, pki: Pki, meter: FieldMeter) -> None:
        kms = pki.kms
        self.suite = meter.suite
        self.curve, self.hash, self.size = CURVES[meter.suite]
        self.meter = meter
        self.keys = meter.keys()
        self.hes: dict[CertificateType, ec.EllipticCurvePublicKey] = {}
        self.meter_keys: dict[CertificateType, ec.EllipticCurvePrivateKey] = {}
        for kind in (CertificateType.DIGITAL_SIGNATURE, CertificateType.KEY_AGREEMENT):
            info = kms.services.end_entities.create(
                actor="pytest", system_title=CLIENT,
                suite=SecuritySuite(meter.suite), certificate_type=kind, purpose="hes-client",
            )  # fmt: skip
            cert = x509.load_pem_x509_certificate(str(info["certificate"]).encode())
            self.hes[kind] = cert.public_key()  # type: ignore[assignment]
            csr, key = meter_csr(meter.system_title, self.curve)
            kms.services.certificates.issue(
                actor="pytest", items=[certificates.CsrItem(csr, "m", kind)]
            )
            self.meter_keys[kind] = key

    def kdf(self, z: bytes, other_info_tail: bytes) -> bytes:
        algorithm = bytes.fromhex("60857405080300" if self.suite == 1 else "60857405080301")
        length = 16 if self.suite == 1 else 32
        return ConcatKDFHash(self.hash, length, algorithm + other_info_tail).derive(z)

    def meter_reads(self, apdu: bytes) -> bytes:
        """The meter's side of an APDU from the head-end (bytes read by hand)."""
        assert apdu[0] == 0xDD and apdu[1] == 8
        txid, at = apdu[2:10], 10
        assert apdu[at : at + 9] == b"\x08" + CLIENT
        assert apdu[at + 9 : at + 18] == b"\x08" + self.meter.system_title
        assert apdu[at + 18 : at + 22] == b"\x00\x00\x01\x02"
        at += 22
        assert apdu[at] == 0x01
        kp = apdu[at + 1]
        at += 2
        ka = self.meter_keys[CertificateType.KEY_AGREEMENT]
        if kp == 0x01:
            assert apdu[at] == 0x81
            data = apdu[at + 2 : at + 2 + apdu[at + 1]]
            at += 2 + apdu[at + 1]
            point, signature = data[: 2 * self.size], data[2 * self.size :]
            der = encode_dss_signature(
                int.from_bytes(signature[: self.size], "big"),
                int.from_bytes(signature[self.size :], "big"),
            )
            self.hes[CertificateType.DIGITAL_SIGNATURE].verify(
                der, b"\x01" + point, ec.ECDSA(self.hash)
            )
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.curve, b"\x04" + point)
            key = self.kdf(ka.exchange(ec.ECDH(), peer), CLIENT + self.meter.system_title)
        else:
            assert kp == 0x02 and apdu[at] == 0x00
            at += 1
            z = ka.exchange(ec.ECDH(), self.hes[CertificateType.KEY_AGREEMENT])
            key = self.kdf(z, CLIENT + b"\x08" + txid + self.meter.system_title)
        aad_fields = apdu[1 : 1 + 9 + 9 + 9 + 1 + 1]
        content = apdu[at + 1 :] if apdu[at] < 0x80 else apdu[at + 2 :]
        sc, ic, body = content[0], content[1:5], content[5:]
        aad = bytes([sc]) + self.keys["GAK"] + aad_fields
        decryptor = Cipher(
            algorithms.AES(key), modes.GCM(CLIENT + ic, body[-12:], min_tag_length=12)
        ).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(body[:-12]) + decryptor.finalize()

    def meter_writes(self, plain: bytes, ic: int, *, one_pass: bool) -> bytes:
        """A DD from the meter to the head-end, made with pyca."""
        txid = ic.to_bytes(8, "big")
        fields = _octets(txid) + _octets(self.meter.system_title) + _octets(CLIENT) + b"\x00\x00"
        ka_hes = self.hes[CertificateType.KEY_AGREEMENT]
        if one_pass:
            ephemeral = ec.generate_private_key(self.curve)
            point = _point(ephemeral.public_key())
            signing = self.meter_keys[CertificateType.DIGITAL_SIGNATURE]
            signature = _raw(signing.sign(b"\x01" + point, ec.ECDSA(self.hash)), self.size)
            key_info = b"\x01\x02\x01\x01" + _octets(point + signature)
            key = self.kdf(ephemeral.exchange(ec.ECDH(), ka_hes), self.meter.system_title + CLIENT)
        else:
            key_info = b"\x01\x02\x01\x02\x00"
            z = self.meter_keys[CertificateType.KEY_AGREEMENT].exchange(ec.ECDH(), ka_hes)
            key = self.kdf(z, self.meter.system_title + b"\x08" + txid + CLIENT)
        sc = 0x30 | self.suite
        aad = bytes([sc]) + self.keys["GAK"] + fields
        iv = self.meter.system_title + ic.to_bytes(4, "big")
        body = AESGCM(key).encrypt(iv, plain, aad)[:-4]  # DLMS keeps 12 bytes of the tag
        content = bytes([sc]) + ic.to_bytes(4, "big") + body
        return b"\xdd" + fields + key_info + _octets(content)


@pytest.fixture
def service(pki: Pki) -> TokenApduProtection:
    svc = apdu_protection_factory(pki.kms.hsm, pki.kms.db, pki.kms.config)
    yield svc  # type: ignore[misc]
    svc.close()


@pytest.mark.parametrize("suite", [1, 2])
@pytest.mark.parametrize("form", [Form.GENERAL_AGREED_1E1S, Form.GENERAL_AGREED_0E2S])
def test_the_meter_reads_what_the_kms_ciphers(
    pki: Pki, tmp_path: Path, service: TokenApduProtection, suite: int, form: Form
) -> None:
    parties = Parties(pki, field_meter(pki.kms, tmp_path, 80 + suite, suite))
    first = service.protect(
        parties.meter.system_title, GET_REQUEST, 0x30 | suite, form=form, actor=ACTOR
    )
    second = service.protect(
        parties.meter.system_title, GET_REQUEST, 0x30 | suite, form=form, actor=ACTOR
    )
    assert second.invocation_counter > first.invocation_counter
    assert first.apdu[2:10] != second.apdu[2:10]  # a fresh transaction id (the 0e2s nonce)
    for result in (first, second):
        assert parties.meter_reads(result.apdu) == GET_REQUEST
    with pki.kms.db.begin() as session:
        records = [
            json.loads(e.details)
            for e in repo.audit_events(session)
            if e.operation == "apdu.agreed_key.protect"
        ]
    location = "token-digest" if pki.kms.hsm.profile.kdf == "digest_key" else "host"
    assert [(r["ic"], r["kdf"]) for r in records] == [
        (first.invocation_counter, location),
        (second.invocation_counter, location),
    ]


@pytest.mark.parametrize("suite", [1, 2])
@pytest.mark.parametrize("one_pass", [True, False])
def test_the_kms_reads_what_the_meter_ciphers(
    pki: Pki, tmp_path: Path, service: TokenApduProtection, suite: int, one_pass: bool
) -> None:
    parties = Parties(pki, field_meter(pki.kms, tmp_path, 90 + suite, suite))
    title = parties.meter.system_title
    apdu = parties.meter_writes(GET_REQUEST, 7, one_pass=one_pass)
    result = service.verify(title, apdu, actor=ACTOR)
    assert (result.apdu, result.invocation_counter) == (GET_REQUEST, 7)
    with pytest.raises(InvocationCounterError):
        service.verify(title, apdu, actor=ACTOR)  # the same APDU again: a replay
    tampered = bytearray(parties.meter_writes(GET_REQUEST, 8, one_pass=one_pass))
    tampered[-1] ^= 1
    with pytest.raises(InvalidTag):
        service.verify(title, bytes(tampered), actor=ACTOR)
    assert service.verify(
        title, parties.meter_writes(GET_REQUEST, 9, one_pass=one_pass), actor=ACTOR
    ).apdu


def test_a_forged_ephemeral_signature_is_refused(
    pki: Pki, tmp_path: Path, service: TokenApduProtection
) -> None:
    parties = Parties(pki, field_meter(pki.kms, tmp_path, 95, 1))
    apdu = bytearray(parties.meter_writes(GET_REQUEST, 3, one_pass=True))
    # DD, txid, the two titles, date-time, other-information, 01 02, 01 01, 81 80, x||y||r||s
    signature_end = 1 + 9 + 9 + 9 + 1 + 1 + 2 + 2 + 2 + 128
    apdu[signature_end - 1] ^= 1
    with pytest.raises(AuthenticationFailed, match="ephemeral key does not verify"):
        service.verify(parties.meter.system_title, bytes(apdu), actor=ACTOR)


def test_agreed_ciphering_needs_the_meters_key_agreement_certificate(
    pki: Pki, tmp_path: Path, service: TokenApduProtection
) -> None:
    meter = field_meter(pki.kms, tmp_path, 96, 2)
    with pytest.raises(Exception, match="key-agreement certificate on P-384"):
        service.protect(
            meter.system_title, GET_REQUEST, 0x32, form=Form.GENERAL_AGREED_0E2S, actor=ACTOR
        )
    with pytest.raises(InputError, match="suite 1"):
        service.protect(
            meter.system_title, GET_REQUEST, 0x31, form=Form.GENERAL_AGREED_1E1S, actor=ACTOR
        )
