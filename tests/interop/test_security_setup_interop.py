"""gurux-dlms (1.0.203) and dlms-cosem against kms.dlms's security setup methods 4..8, its
ECDSA signed layouts and HLS mechanism 7.

What each comparison proves:

* Methods 4..8: gurux-dlms's ``GXDLMSSecuritySetup`` builds the very bytes our builders do, for
  the same arguments (its ``removeCertificateBySerial`` writes the UTF-8 text of the serial and
  issuer where its ``exportCertificateBySerial`` writes DER; both are carried as given).
* HLS-ECDSA: gurux's client signs ``ecdsa_message``'s bytes for f(StoC) and verifies a pyca
  signature over them for f(CtoS): the message layout, not only the signature format.
* ``GXEcdsa`` and pyca verify each other's raw r || s over ``ephemeral_signed_data`` and
  ``one_pass_signed_data``. gurux-dlms for Python has no key agreement code that builds those
  bytes (its ``getEphemeralPublicKeyData`` returns ``None``), so this proves the signature
  encoding only; the layout is checked against gurux.dlms.java in tests/dlms/test_key_agreement.py.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import types
from collections.abc import Callable
from typing import Any

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID
from dlms_cosem import enumerations
from dlms_cosem.protocol.xdlms.action import ActionRequestNormal
from gurux_dlms.ConnectionState import ConnectionState
from gurux_dlms.ecdsa.GXEcdsa import GXEcdsa
from gurux_dlms.ecdsa.GXPrivateKey import GXPrivateKey
from gurux_dlms.ecdsa.GXPublicKey import GXPublicKey
from gurux_dlms.enums import Authentication, InterfaceType
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.objects import GXDLMSSecuritySetup
from gurux_dlms.secure import GXDLMSSecureClient

from kms.dlms.hls import ecdsa_message
from kms.dlms.key_agreement import ephemeral_signed_data, one_pass_signed_data
from kms.dlms.key_transfer import KeyId
from kms.dlms.obis import security_setup_logical_name
from kms.dlms.security_setup import (
    CertificateEntity,
    CertificateIdentificationByEntity,
    CertificateIdentificationBySerial,
    CertificateType,
    export_certificate_request,
    generate_certificate_request_request,
    generate_key_pair_request,
    import_certificate_request,
    parse_import_certificate_request,
    remove_certificate_request,
)

ST_C = bytes.fromhex("4B4D5300000000A1")
ST_S = bytes.fromhex("4D4D4D0000BC614E")
D_CLIENT = int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)
CLIENT_KEY = ec.derive_private_key(D_CLIENT, ec.SECP256R1())
SERVER_KEY = ec.derive_private_key(0x5EC0DE5EC0DE5EC0DE, ec.SECP256R1())


def _client() -> GXDLMSSecureClient:
    return GXDLMSSecureClient(True, interfaceType=InterfaceType.PDU)


def _single(frames: list[bytes]) -> bytes:
    assert len(frames) == 1
    return bytes(frames[0])


def _quiet(call: Callable[[], Any]) -> Any:
    """gurux-dlms prints keys and debug lines to stdout; keep them out of the test log."""
    with contextlib.redirect_stdout(io.StringIO()):
        return call()


def _certificate() -> bytes:
    """A self-signed P-256 certificate for the server's system title (DER, ~350 bytes)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ST_S.hex().upper())])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(SERVER_KEY.public_key())
        .serial_number(0x1234)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.KeyUsage(True, *[False] * 8), critical=True)
        .sign(SERVER_KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "KMS Issuing CA")]).public_bytes()


# --- methods 4..8 -------------------------------------------------------------------------------


@pytest.mark.parametrize("instance", [0, 3])
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_generate_methods_equal_gurux(instance: int, kind: int) -> None:
    setup = GXDLMSSecuritySetup(f"0.0.43.0.{instance}.255")
    ln = security_setup_logical_name(instance)
    assert _single(setup.generateKeyPair(_client(), kind)) == generate_key_pair_request(
        kind, logical_name=ln
    )
    assert _single(setup.generateCertificate(_client(), kind)) == (
        generate_certificate_request_request(kind, logical_name=ln)
    )


def test_import_certificate_equals_gurux() -> None:
    der = _certificate()
    assert len(der) > 255  # a two-byte A-XDR length: 09 82 nn nn
    certificate = types.SimpleNamespace(encoded=der)
    theirs = _single(GXDLMSSecuritySetup().importCertificate(_client(), certificate))
    assert theirs == import_certificate_request(der)
    assert theirs[13:16] == bytes([0x09, 0x82, len(der) >> 8])
    assert parse_import_certificate_request(theirs).parameter == der


@pytest.mark.parametrize("entity", list(CertificateEntity))
@pytest.mark.parametrize("kind", list(CertificateType))
def test_by_entity_equals_gurux(entity: CertificateEntity, kind: CertificateType) -> None:
    identification = CertificateIdentificationByEntity(entity, kind, ST_S)
    setup = GXDLMSSecuritySetup()
    assert _single(setup.exportCertificateByEntity(_client(), entity, kind, ST_S)) == (
        export_certificate_request(identification)
    )
    assert _single(setup.removeCertificateByEntity(_client(), entity, kind, ST_S)) == (
        remove_certificate_request(identification)
    )


@pytest.mark.parametrize("serial", [1, 0x1234, 0x7F6E5D4C3B2A1908])
def test_export_by_serial_equals_gurux(serial: int) -> None:
    """Gurux puts the serial as a DER INTEGER and the issuer as a DER Name (asn1crypto and pyca
    encode both here, independently of Gurux's ASN.1 code)."""
    der_serial = core.Integer(serial).dump()
    theirs = _single(GXDLMSSecuritySetup().exportCertificateBySerial(_client(), serial, ISSUER))
    ours = export_certificate_request(CertificateIdentificationBySerial(der_serial, ISSUER))
    assert theirs == ours


def test_remove_by_serial_equals_gurux_text_form() -> None:
    """gurux-dlms for Python's removeCertificateBySerial sends the *text* of both fields."""
    theirs = _single(
        GXDLMSSecuritySetup().removeCertificateBySerial(_client(), "4660", "CN=KMS Issuing CA")
    )
    ours = remove_certificate_request(
        CertificateIdentificationBySerial(b"4660", b"CN=KMS Issuing CA")
    )
    assert theirs == ours


@pytest.mark.parametrize(
    ("apdu", "method"),
    [
        (generate_key_pair_request(0), 4),
        (generate_certificate_request_request(1), 5),
        (import_certificate_request(bytes.fromhex("3003020101")), 6),
        (export_certificate_request(CertificateIdentificationByEntity(0, 0, ST_S)), 7),  # type: ignore[arg-type]
        (remove_certificate_request(CertificateIdentificationBySerial(b"\x02\x01\x01", ISSUER)), 8),
    ],
)
def test_dlms_cosem_reads_our_envelope(apdu: bytes, method: int) -> None:
    parsed = ActionRequestNormal.from_bytes(apdu)
    assert parsed.cosem_method.interface == enumerations.CosemInterface.SECURITY_SETUP
    assert parsed.cosem_method.method == method
    assert parsed.data == apdu[13:]


# --- ECDSA signature format ---------------------------------------------------------------------


def _raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def _pyca_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _pyca_verify(key: ec.EllipticCurvePrivateKey, signature: bytes, data: bytes) -> None:
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))


def _gurux_public(key: ec.EllipticCurvePrivateKey) -> GXPublicKey:
    # 65 bytes 04 || x || y: GXPublicKey.fromRawBytes mangles a 64-byte x || y (notes 11).
    return GXPublicKey.fromRawBytes(b"\x04" + _raw_public(key))


def _gurux_private(key: ec.EllipticCurvePrivateKey) -> GXPrivateKey:
    return GXPrivateKey.fromRawBytes(key.private_numbers().private_value.to_bytes(32, "big"))


@pytest.mark.parametrize(
    "signed",
    [
        ephemeral_signed_data(KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY, _raw_public(SERVER_KEY)),
        ephemeral_signed_data(KeyId.MASTER_KEY, _raw_public(SERVER_KEY)),
        one_pass_signed_data(_raw_public(SERVER_KEY)),
    ],
    ids=["key_id0", "key_id3", "one_pass"],
)
def test_gurux_ecdsa_and_pyca_agree_on_raw_signatures(signed: bytes) -> None:
    signature = _pyca_sign(CLIENT_KEY, signed)
    assert GXEcdsa(_gurux_public(CLIENT_KEY)).verify(signature, signed)
    assert not GXEcdsa(_gurux_public(CLIENT_KEY)).verify(signature, signed[1:])
    theirs = GXEcdsa(_gurux_private(CLIENT_KEY)).sign(signed)
    _pyca_verify(CLIENT_KEY, theirs, signed)


# --- HLS mechanism 7 ----------------------------------------------------------------------------

STOC = bytes(range(0x40, 0x40 + 32))
CTOS = bytes(range(0x80, 0x80 + 48))


def _hls_client() -> GXDLMSSecureClient:
    client = GXDLMSSecureClient(
        True, forAuthentication=Authentication.HIGH_ECDSA, interfaceType=InterfaceType.PDU
    )
    client.settings.cipher.systemTitle = ST_C
    client.settings.sourceSystemTitle = ST_S
    client.settings.stoCChallenge = STOC
    client.settings.ctoSChallenge = CTOS
    # Gurux's pair: the *server's* public key (to verify f(CtoS)) and the client's private key.
    client.settings.cipher.signingKeyPair = (
        _gurux_public(SERVER_KEY),
        _gurux_private(CLIENT_KEY),
    )
    return client


def test_gurux_f_stoc_signs_our_ecdsa_message() -> None:
    apdu = _single(_quiet(_hls_client().getApplicationAssociationRequest))
    # action-request to 0.0.40.0.0.255 method 1 with octet-string(64): the last 64 bytes.
    assert apdu[-66:-64] == b"\x09\x40"
    _pyca_verify(CLIENT_KEY, apdu[-64:], ecdsa_message(ST_C, ST_S, STOC, CTOS))


def test_gurux_accepts_our_f_ctos_and_refuses_the_mirror_order() -> None:
    good = _pyca_sign(SERVER_KEY, ecdsa_message(ST_S, ST_C, CTOS, STOC))
    client = _hls_client()
    _quiet(lambda: client.parseApplicationAssociationResponse(GXByteBuffer(b"\x09\x40" + good)))
    assert client.settings.connected & ConnectionState.DLMS
    # The client's message order signed by the server is not f(CtoS). gurux-dlms refuses it,
    # though not as it means to: printing "Invalid StoC" it reads a variable only the other
    # mechanisms set.
    wrong = _pyca_sign(SERVER_KEY, ecdsa_message(ST_C, ST_S, STOC, CTOS))
    with pytest.raises(UnboundLocalError):
        _quiet(
            lambda: _hls_client().parseApplicationAssociationResponse(
                GXByteBuffer(b"\x09\x40" + wrong)
            )
        )
