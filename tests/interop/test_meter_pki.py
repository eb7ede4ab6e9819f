"""The simulated meter's public-key half proved on its own, before it judges the KMS.

Requests are written out byte by byte or made by gurux-dlms (``GXDLMSSecuritySetup``, and its
HLS-ECDSA client for mechanism 7), never with ``kms``; certificates come from a small pyca CA
here; responses are read with dlms-cosem's ``ActionResponseFactory``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from dlms_cosem.protocol.xdlms.action import (
    ActionResponseFactory,
    ActionResponseNormal,
)
from gurux_dlms.ConnectionState import ConnectionState
from gurux_dlms.ecdsa.GXPrivateKey import GXPrivateKey
from gurux_dlms.ecdsa.GXPublicKey import GXPublicKey
from gurux_dlms.enums import Authentication, InterfaceType
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.objects import GXDLMSSecuritySetup
from gurux_dlms.secure import GXDLMSSecureClient

from tests.interop.meter import ActionResult, KeyPairType, SimulatedMeter
from tests.interop.pki_requests import (
    SUCCESS,
    Ca,
    action_request,
    generate_csr,
    generate_key_pair,
    import_certificate,
    octet_string,
    refusal,
    reply_to_hls,
    returned,
)

ST = bytes.fromhex("4D4D4D0000BC614E")
ST_C = bytes.fromhex("4B4D5300000000A1")
KEK = {0: bytes(16), 1: bytes(16), 2: bytes(32)}
CURVE = {1: (ec.SECP256R1(), hashes.SHA256(), 32), 2: (ec.SECP384R1(), hashes.SHA384(), 48)}
SUITES = pytest.mark.parametrize("suite", [1, 2])


def new_meter(suite: int, **kwargs: Any) -> SimulatedMeter:
    return SimulatedMeter(ST, suite, KEK[suite], **kwargs)


def _with_key(suite: int, kind: KeyPairType = KeyPairType.DIGITAL_SIGNATURE) -> SimulatedMeter:
    meter = new_meter(suite)
    assert meter.apply(generate_key_pair(kind)) == SUCCESS
    return meter


# --- methods 4 and 5 ----------------------------------------------------------------------------


@SUITES
@pytest.mark.parametrize("kind", list(KeyPairType))
def test_csr_of_each_key_pair(suite: int, kind: KeyPairType) -> None:
    meter = _with_key(suite, kind)
    csr = x509.load_der_x509_csr(returned(meter.apply(generate_csr(kind))))
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=4D4D4D0000BC614E"
    curve, hash_, _ = CURVE[suite]
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == hash_.name
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == curve.name
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert point == meter.pki().public_key(kind)
    others = [k for k in KeyPairType if k is not kind]
    assert all(meter.pki().public_key(k) is None for k in others)


@SUITES
def test_gurux_built_requests_are_accepted(suite: int) -> None:
    client = GXDLMSSecureClient(True, interfaceType=InterfaceType.PDU)
    setup = GXDLMSSecuritySetup()
    meter = new_meter(suite)
    (request,) = setup.generateKeyPair(client, 1)
    assert meter.apply(bytes(request)) == SUCCESS
    (request,) = setup.generateCertificate(client, 1)
    csr = returned(meter.apply(bytes(request)))
    cert = Ca(CURVE[suite][0]).issue_from_csr(csr, KeyPairType.KEY_AGREEMENT)
    (request,) = setup.importCertificate(client, types.SimpleNamespace(encoded=cert))
    assert meter.apply(bytes(request)) == SUCCESS
    assert meter.pki().own_certificate(KeyPairType.KEY_AGREEMENT) == cert


def test_a_new_key_pair_replaces_the_old_and_drops_its_certificate() -> None:
    meter = _with_key(1)
    first = meter.pki().public_key(KeyPairType.DIGITAL_SIGNATURE)
    csr = returned(meter.apply(generate_csr(0)))
    cert = Ca(ec.SECP256R1()).issue_from_csr(csr, KeyPairType.DIGITAL_SIGNATURE)
    assert meter.apply(import_certificate(cert)) == SUCCESS
    assert meter.pki().own_certificate(KeyPairType.DIGITAL_SIGNATURE) == cert
    assert meter.apply(generate_key_pair(0)) == SUCCESS
    assert meter.pki().public_key(KeyPairType.DIGITAL_SIGNATURE) not in (None, first)
    assert meter.pki().own_certificate(KeyPairType.DIGITAL_SIGNATURE) is None
    # The old certificate names a key the meter no longer holds, for its own system title.
    assert meter.apply(import_certificate(cert)) == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal == "certificate for this meter with a key it does not hold"


def test_no_csr_without_a_key_pair() -> None:
    meter = _with_key(2, KeyPairType.KEY_AGREEMENT)
    assert meter.apply(generate_csr(0)) == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal == "no DIGITAL_SIGNATURE key pair to make a CSR for"


@pytest.mark.parametrize(
    ("apdu", "result"),
    [
        (generate_key_pair(3), ActionResult.OTHER_REASON),
        (generate_csr(3), ActionResult.OTHER_REASON),
        (action_request(4) + b"\x11\x00", ActionResult.TYPE_UNMATCHED),  # unsigned, not enum
        (action_request(4) + b"\x16\x00\x00", ActionResult.TYPE_UNMATCHED),  # trailing byte
        (action_request(5)[:-1] + b"\x00", ActionResult.TYPE_UNMATCHED),  # no parameters
        (action_request(6) + b"\x09\x05\x30\x03\x02\x01", ActionResult.TYPE_UNMATCHED),  # short
        (action_request(6) + b"\x09\x03\x30\x03\x02\x01\x01", ActionResult.TYPE_UNMATCHED),  # long
        (
            action_request(6) + b"\x09\x83\x00\x00\x01\x30",
            ActionResult.TYPE_UNMATCHED,
        ),  # bad length
        (action_request(6) + b"\x16\x00", ActionResult.TYPE_UNMATCHED),
        (import_certificate(bytes.fromhex("3003020101")), ActionResult.OTHER_REASON),
        (action_request(7) + b"\x16\x00", ActionResult.READ_WRITE_DENIED),
        (action_request(3) + b"\x01\x00", ActionResult.READ_WRITE_DENIED),
    ],
)
def test_malformed_public_key_requests(apdu: bytes, result: ActionResult) -> None:
    meter = new_meter(1)
    assert meter.apply(apdu) == refusal(result)
    assert meter.pki().public_key(KeyPairType.DIGITAL_SIGNATURE) is None


@pytest.mark.parametrize("method", [4, 5, 6])
def test_suite_0_has_no_public_key_methods(method: int) -> None:
    meter = new_meter(0)
    parameter = b"\x16\x00" if method < 6 else octet_string(Ca(ec.SECP256R1()).der)
    assert meter.apply(action_request(method) + parameter) == refusal(
        ActionResult.READ_WRITE_DENIED
    )
    with pytest.raises(ValueError, match="suite 0"):
        meter.pki()


# --- method 6 -----------------------------------------------------------------------------------


@SUITES
def test_import_own_peer_and_authority_certificates(suite: int) -> None:
    ca = Ca(CURVE[suite][0])
    meter = _with_key(suite)
    own = ca.issue_from_csr(returned(meter.apply(generate_csr(0))), KeyPairType.DIGITAL_SIGNATURE)
    peer = ca.issue(ST_C.hex().upper(), ec.generate_private_key(CURVE[suite][0]).public_key())
    for der in (ca.der, own, peer):
        assert meter.apply(import_certificate(der)) == SUCCESS, meter.last_refusal
    assert meter.pki().authorities() == [ca.der]
    assert meter.pki().own_certificate(KeyPairType.DIGITAL_SIGNATURE) == own
    assert meter.pki().peer_certificate(ST_C, KeyPairType.DIGITAL_SIGNATURE) == peer
    assert meter.pki().peer_certificate(ST_C, KeyPairType.KEY_AGREEMENT) is None


def _refused_import(suite: int, make: Callable[[SimulatedMeter, Ca], bytes], reason: str) -> None:
    meter = _with_key(suite)
    der = make(meter, Ca(CURVE[suite][0]))
    assert meter.apply(import_certificate(der)) == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal is not None and reason in meter.last_refusal
    assert meter.pki().own_certificate(KeyPairType.DIGITAL_SIGNATURE) is None
    assert meter.pki().peer_certificate(ST_C, KeyPairType.DIGITAL_SIGNATURE) is None


def _own_as(kind: KeyPairType, **kwargs: Any) -> Callable[[SimulatedMeter, Ca], bytes]:
    return lambda meter, ca: ca.issue_from_csr(
        returned(meter.apply(generate_csr(0))), kind, **kwargs
    )


def _peer(
    cn: str = ST_C.hex().upper(), curve: ec.EllipticCurve | None = None, **kwargs: Any
) -> Callable[[SimulatedMeter, Ca], bytes]:
    def make(meter: SimulatedMeter, ca: Ca) -> bytes:
        key = ec.generate_private_key(curve or CURVE[meter.suite][0]).public_key()
        return ca.issue(cn, key, **kwargs)

    return make


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_own_as(KeyPairType.KEY_AGREEMENT), "certificate of the DIGITAL_SIGNATURE key says"),
        (_own_as(KeyPairType.TLS), "certificate of the DIGITAL_SIGNATURE key says TLS"),
        (_own_as(KeyPairType.DIGITAL_SIGNATURE, days=-1), "outside its validity period"),
        (_own_as(KeyPairType.DIGITAL_SIGNATURE, critical=False), "is not critical"),
        (_peer(cn=ST.hex().upper()), "with a key it does not hold"),
        (_peer(cn=ST_C.hex()), "not a system title"),
        (_peer(cn="KMS HES"), "not a system title"),
        (_peer(curve=ec.SECP521R1()), "not on the suite"),
        (lambda meter, ca: ca.der + b"\x00", "does not parse"),
        (lambda meter, ca: ca.der[:40], "does not parse"),
    ],
    ids=["as-ka", "as-tls", "expired", "usage-not-critical", "foreign-key", "lower-hex",
         "cn-text", "p521", "trailing", "truncated"],
)  # fmt: skip
def test_import_refusals(make: Callable[[SimulatedMeter, Ca], bytes], reason: str) -> None:
    _refused_import(1, make, reason)


def test_a_suite_2_meter_refuses_a_p256_end_entity_certificate() -> None:
    _refused_import(2, _peer(curve=ec.SECP256R1()), "not on the suite 2 curve")


@SUITES
def test_trust_anchors_make_the_meter_check_every_signature(suite: int) -> None:
    root = Ca(ec.SECP384R1(), "Root")
    issuing = Ca(CURVE[suite][0], "Issuing", parent=root)
    impostor = Ca(CURVE[suite][0], "Issuing")  # the same name, another key, self-signed
    meter = SimulatedMeter(ST, suite, KEK[suite], trust_anchors=[root.der])
    assert meter.apply(generate_key_pair(0)) == SUCCESS
    csr = returned(meter.apply(generate_csr(0)))
    peer_key = ec.generate_private_key(CURVE[suite][0]).public_key()

    # Before the issuing CA is known, nothing it signed is accepted; a self-signed CA never is.
    own = issuing.issue_from_csr(csr, KeyPairType.DIGITAL_SIGNATURE)
    for der in (own, impostor.der):
        assert meter.apply(import_certificate(der)) == refusal(ActionResult.OTHER_REASON)
        assert meter.last_refusal == "certificate is not signed by a trusted authority"
    assert meter.apply(import_certificate(issuing.der)) == SUCCESS
    for der in (own, issuing.issue(ST_C.hex().upper(), peer_key)):
        assert meter.apply(import_certificate(der)) == SUCCESS, meter.last_refusal
    forged = impostor.issue(ST_C.hex().upper(), peer_key)
    assert meter.apply(import_certificate(forged)) == refusal(ActionResult.OTHER_REASON)


# --- HLS-ECDSA ----------------------------------------------------------------------------------


def _raw(key: ec.EllipticCurvePrivateKey, data: bytes, suite: int) -> bytes:
    _, hash_, width = CURVE[suite]
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_)))
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def _verify_raw(point: bytes, signature: bytes, data: bytes, suite: int) -> None:
    curve, hash_, width = CURVE[suite]
    key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    der = encode_dss_signature(
        int.from_bytes(signature[:width], "big"), int.from_bytes(signature[width:], "big")
    )
    key.verify(der, data, ec.ECDSA(hash_))


def _hls_meter(suite: int) -> tuple[SimulatedMeter, ec.EllipticCurvePrivateKey]:
    """A meter with a signing key pair that knows the client ST_C's signing certificate."""
    client_key = ec.generate_private_key(CURVE[suite][0])
    meter = _with_key(suite)
    cert = Ca(CURVE[suite][0]).issue(ST_C.hex().upper(), client_key.public_key())
    assert meter.apply(import_certificate(cert)) == SUCCESS
    return meter, client_key


CTOS = bytes(range(0x80, 0x80 + 48))


@SUITES
def test_hls_ecdsa_both_ways(suite: int) -> None:
    meter, client_key = _hls_meter(suite)
    stoc = meter.associate(ST_C, CTOS)
    assert stoc is not None and len(stoc) == 32 and not meter.authenticated
    f_stoc = _raw(client_key, ST_C + ST + stoc + CTOS, suite)
    f_ctos = returned(meter.apply(reply_to_hls(f_stoc)))
    assert meter.authenticated
    point = meter.pki().public_key(KeyPairType.DIGITAL_SIGNATURE)
    assert point is not None and len(f_ctos) == 2 * CURVE[suite][2]
    _verify_raw(point, f_ctos, ST + ST_C + CTOS + stoc, suite)
    with pytest.raises(InvalidSignature):  # the other order is not f(CtoS)
        _verify_raw(point, f_ctos, ST_C + ST + stoc + CTOS, suite)
    # The challenge is spent.
    assert meter.apply(reply_to_hls(f_stoc)) == refusal(ActionResult.READ_WRITE_DENIED)


def _wrong_f_stocs(key: ec.EllipticCurvePrivateKey, stoc: bytes, suite: int) -> dict[str, bytes]:
    good = _raw(key, ST_C + ST + stoc + CTOS, suite)
    other = ec.generate_private_key(CURVE[suite][0])
    return {
        "flipped bit": good[:-1] + bytes([good[-1] ^ 1]),
        "server order": _raw(key, ST + ST_C + CTOS + stoc, suite),
        "other challenge": _raw(key, ST_C + ST + bytes(32) + CTOS, suite),
        "other key": _raw(other, ST_C + ST + stoc + CTOS, suite),
        "truncated": good[:-1],
        "zeros": bytes(len(good)),
    }


@SUITES
@pytest.mark.parametrize(
    "case",
    ["flipped bit", "server order", "other challenge", "other key", "truncated", "zeros"],
)
def test_hls_ecdsa_refuses_a_wrong_f_stoc(suite: int, case: str) -> None:
    meter, client_key = _hls_meter(suite)
    stoc = meter.associate(ST_C, CTOS)
    assert stoc is not None
    assert meter.apply(reply_to_hls(_wrong_f_stocs(client_key, stoc, suite)[case])) == refusal(
        ActionResult.OTHER_REASON
    )
    assert not meter.authenticated
    # One try per challenge: even the right answer now finds nothing pending.
    good = _raw(client_key, ST_C + ST + stoc + CTOS, suite)
    assert meter.apply(reply_to_hls(good)) == refusal(ActionResult.READ_WRITE_DENIED)


def test_hls_ecdsa_needs_the_clients_certificate() -> None:
    meter = _with_key(1)
    client_key = ec.generate_private_key(ec.SECP256R1())
    stoc = meter.associate(ST_C, CTOS)
    assert stoc is not None
    assert meter.apply(reply_to_hls(_raw(client_key, ST_C + ST + stoc + CTOS, 1))) == refusal(
        ActionResult.OTHER_REASON
    )
    assert meter.last_refusal == f"no digital signature certificate for client {ST_C.hex()}"


@pytest.mark.parametrize(
    ("meter", "ctos", "reason"),
    [
        (lambda: new_meter(1), CTOS, "no digital signature key pair"),
        (lambda: _with_key(1, KeyPairType.KEY_AGREEMENT), CTOS, "no digital signature key pair"),
        (lambda: _with_key(1), CTOS[:31], "CtoS is 31 bytes"),
        (lambda: _with_key(2), CTOS + CTOS, "CtoS is 96 bytes"),
        (lambda: new_meter(0), CTOS, "needs suite 1 or 2"),
    ],
)
def test_association_rejected(
    meter: Callable[[], SimulatedMeter], ctos: bytes, reason: str
) -> None:
    made = meter()
    assert made.associate(ST_C, ctos) is None
    assert made.last_refusal is not None and reason in made.last_refusal
    assert made.apply(reply_to_hls(bytes(64))) == refusal(ActionResult.READ_WRITE_DENIED)


def test_reply_to_hls_malformed() -> None:
    meter, client_key = _hls_meter(1)
    stoc = meter.associate(ST_C, CTOS)
    assert stoc is not None
    good = _raw(client_key, ST_C + ST + stoc + CTOS, 1)
    apdu = reply_to_hls(good)
    cases = [
        (apdu[:3] + b"\x00\x40" + apdu[5:], ActionResult.OBJECT_CLASS_INCONSISTENT),
        (apdu[:11] + b"\x02" + apdu[12:], ActionResult.READ_WRITE_DENIED),  # method 2
        (apdu + b"\x00", ActionResult.TYPE_UNMATCHED),
        (apdu[:12] + b"\x00", ActionResult.TYPE_UNMATCHED),  # no parameters
        (apdu[:13] + b"\x0a" + apdu[14:], ActionResult.TYPE_UNMATCHED),  # visible-string
    ]
    for changed, result in cases:
        assert meter.apply(changed) == refusal(result)
    # Malformed requests do not spend the challenge.
    assert returned(meter.apply(reply_to_hls(good)))


def _quiet(call: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # gurux-dlms prints debug lines
        return call()


def test_gurux_hls_ecdsa_client_and_the_meter_agree() -> None:
    """gurux-dlms's own mechanism-7 client (P-256 only) signs f(StoC), the meter checks it and
    answers; gurux checks the meter's f(CtoS)."""
    meter, client_key = _hls_meter(1)
    stoc = meter.associate(ST_C, CTOS)
    assert stoc is not None
    point = meter.pki().public_key(KeyPairType.DIGITAL_SIGNATURE)
    client = GXDLMSSecureClient(
        True, forAuthentication=Authentication.HIGH_ECDSA, interfaceType=InterfaceType.PDU
    )
    client.settings.cipher.systemTitle = ST_C
    client.settings.sourceSystemTitle = ST
    client.settings.stoCChallenge = stoc
    client.settings.ctoSChallenge = CTOS
    private = client_key.private_numbers().private_value.to_bytes(32, "big")
    client.settings.cipher.signingKeyPair = (
        GXPublicKey.fromRawBytes(point),
        GXPrivateKey.fromRawBytes(private),
    )
    (request,) = _quiet(client.getApplicationAssociationRequest)
    response = meter.apply(bytes(request))
    assert meter.authenticated, meter.last_refusal
    data = bytes(ActionResponseFactory.from_bytes(response).data)
    _quiet(lambda: client.parseApplicationAssociationResponse(GXByteBuffer(data)))
    assert client.settings.connected & ConnectionState.DLMS


def test_responses_without_data_still_read_as_before() -> None:
    meter = new_meter(1)
    parsed = ActionResponseFactory.from_bytes(meter.apply(generate_key_pair(0)))
    assert isinstance(parsed, ActionResponseNormal)


def test_meter_pki_shares_no_code_with_the_kms() -> None:
    for name in ("meter.py", "meter_pki.py"):
        tree = ast.parse((Path(__file__).parent / name).read_text(encoding="utf-8"))
        imported = {
            ("." * node.level) + (node.module or "")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        } | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert any(m.startswith("cryptography") for m in imported)
        assert not {m for m in imported if m.split(".")[0] in ("kms", "tests")}
        assert {m for m in imported if m.startswith(".")} <= {".meter_pki"}
