"""Issue 5 section 4: the KMS's certificates and HLS-ECDSA against a meter nobody here wrote.

For suites 1 and 2: a meter is provisioned and confirmed (``field_meter``) and, like a meter
from the factory, trusts the KMS's root CA (installed out of band). The station sends it
generate_key_pair and generate_certificate_request (bytes from ``kms.dlms.security_setup``);
the KMS issues certificates from the meter's CSRs (``kms.services.pki.certificates.issue``); the
import_certificate action-requests carry the issuing CA, the meter's own certificates and the
head-end's (``kms.services.pki.end_entities``) into the meter, which checks each against what it
holds and what it trusts (:mod:`tests.interop.meter_pki`, pyca only). Then HLS mechanism 7 runs
between the KMS (``kms.services.hes.hls``, signing in the token) and the meter, both ways, and fails
both ways with a wrong signature or a wrong challenge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from dlms_cosem import enumerations
from dlms_cosem.cosem import CosemMethod, Obis
from dlms_cosem.dlms_data import OctetStringData
from dlms_cosem.protocol.xdlms.action import ActionRequestNormal
from dlms_cosem.protocol.xdlms.invoke_id_and_priority import InvokeIdAndPriority

from kms.dlms.hls import Mechanism
from kms.dlms.security_setup import (
    generate_certificate_request_request,
    generate_key_pair_request,
    import_certificate_request,
)
from kms.dlms.suites import SecuritySuite
from kms.errors import AuthenticationFailed
from kms.pki.profiles import CertificateType
from kms.services.hes.hls import TokenHlsAuthentication, hls_factory
from kms.services.hes.keys_in_use import keys_in_use
from kms.services.pki import certificates
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.interop.meter import ActionResult, KeyPairType, SimulatedMeter
from tests.interop.pki_requests import SUCCESS, refusal, returned
from tests.kms_fixtures import ACTOR, FieldMeter, Kms, Pki, field_meter

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
SUITES = pytest.mark.parametrize("suite", [1, 2])
ECDSA = Mechanism.HLS_ECDSA
TYPES = (CertificateType.DIGITAL_SIGNATURE, CertificateType.KEY_AGREEMENT)


@pytest.fixture
def service(kms: Kms) -> Iterator[TokenHlsAuthentication]:
    svc = hls_factory(keys_in_use(kms.hsm, kms.db, kms.config), kms.config)
    try:
        yield svc
    finally:
        svc.close()


def reply_to_hls_authentication(f_stoc: bytes) -> bytes:
    """The client's action on Association LN 0.0.40.0.0.255 method 1, by dlms-cosem."""
    method = CosemMethod(enumerations.CosemInterface.ASSOCIATION_LN, Obis(0, 0, 40, 0, 0), 1)
    assert len(f_stoc) < 0x80  # dlms-cosem writes any octet-string length as one byte
    data = bytes(OctetStringData(f_stoc).to_bytes())
    invoke = InvokeIdAndPriority(1, confirmed=True, high_priority=True)  # C1, as kms.dlms sends
    return bytes(ActionRequestNormal(method, data, invoke).to_bytes())


def _der(pem: object) -> bytes:
    return x509.load_pem_x509_certificate(str(pem).encode()).public_bytes(
        serialization.Encoding.DER
    )


def hes_certificate(kms: Kms, suite: int, system_title: bytes = CLIENT) -> bytes:
    made = kms.services.end_entities.create(
        actor="pytest", system_title=system_title,
        suite=SecuritySuite(suite), certificate_type=CertificateType.DIGITAL_SIGNATURE,
        purpose="hes-client",
    )  # fmt: skip
    return _der(made["certificate"])


@dataclass
class Certified:
    field: FieldMeter
    issued: dict[CertificateType, bytes]

    @property
    def meter(self) -> SimulatedMeter:
        return self.field.meter


def certify(pki: Pki, tmp_path: Path, index: int, suite: int, hes: bytes | None) -> Certified:
    """The whole station flow: key pairs, CSRs, issuance, and the imports into the meter (the
    issuing CA's certificate, the meter's two, and the head-end's ``hes`` if given)."""
    kms = pki.kms
    field = field_meter(kms, tmp_path, index, suite)
    meter = field.meter
    issuing, root = kms.services.certificates.chain(SecuritySuite(suite))
    meter.pki().install_trust_anchor(root)
    csrs = {}
    for kind in TYPES:
        assert meter.apply(generate_key_pair_request(kind)) == SUCCESS, meter.last_refusal
        csrs[kind] = returned(meter.apply(generate_certificate_request_request(kind)))
    items = [certificates.CsrItem(csrs[k], f"{k.cli_name}.csr", k) for k in TYPES]
    made = kms.services.certificates.issue(actor="pytest", items=items)
    issued = {kind: one.der for kind, one in zip(TYPES, made, strict=True)}
    # The meter checks every certificate against the root it trusts: the CA comes first.
    early = meter.apply(import_certificate_request(issued[CertificateType.DIGITAL_SIGNATURE]))
    assert early == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal == "certificate is not signed by a trusted authority"
    for der in (issuing, *issued.values(), *([hes] if hes else [])):
        assert meter.apply(import_certificate_request(der)) == SUCCESS, meter.last_refusal
    return Certified(field, issued)


@SUITES
def test_the_meter_holds_what_the_kms_issued(pki: Pki, tmp_path: Path, suite: int) -> None:
    hes = hes_certificate(pki.kms, suite)
    certified = certify(pki, tmp_path, 80 + suite, suite, hes)
    store = certified.meter.pki()
    for kind in TYPES:
        assert store.own_certificate(KeyPairType(kind)) == certified.issued[kind]
        cert = x509.load_der_x509_certificate(certified.issued[kind])
        point = cert.public_key().public_bytes(  # the CSR's key, in the certificate
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        assert point == store.public_key(KeyPairType(kind))
    assert store.peer_certificate(CLIENT, KeyPairType.DIGITAL_SIGNATURE) == hes
    assert len(store.authorities()) == 1


@SUITES
def test_hls_ecdsa_both_ways(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication, suite: int
) -> None:
    certified = certify(pki, tmp_path, 82 + suite, suite, hes_certificate(pki.kms, suite))
    meter, title = certified.meter, certified.field.system_title
    for length in (32, 64):
        ctos = service.challenge(length)
        stoc = meter.associate(CLIENT, ctos)
        assert stoc is not None, meter.last_refusal
        f_stoc = service.answer(title, ECDSA, stoc, ctos, actor=ACTOR).response
        f_ctos = returned(meter.apply(reply_to_hls_authentication(f_stoc)))
        assert meter.authenticated, meter.last_refusal
        assert len(f_ctos) == (64 if suite == 1 else 96)
        assert service.check(title, ECDSA, ctos, stoc, f_ctos, actor=ACTOR) is None


@SUITES
@pytest.mark.parametrize("case", ["flipped bit", "other StoC", "other CtoS", "truncated"])
def test_the_meter_refuses_a_wrong_f_stoc(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication, suite: int, case: str
) -> None:
    certified = certify(pki, tmp_path, 84 + suite, suite, hes_certificate(pki.kms, suite))
    meter, title = certified.meter, certified.field.system_title
    ctos = service.challenge(32)
    stoc = meter.associate(CLIENT, ctos)
    assert stoc is not None
    other = bytes(b ^ 0x5A for b in stoc)
    if case == "flipped bit":
        good = service.answer(title, ECDSA, stoc, ctos, actor=ACTOR).response
        f_stoc = good[:-1] + bytes([good[-1] ^ 1])
    elif case == "truncated":
        f_stoc = service.answer(title, ECDSA, stoc, ctos, actor=ACTOR).response[:-1]
    elif case == "other StoC":
        f_stoc = service.answer(title, ECDSA, other, ctos, actor=ACTOR).response
    else:
        f_stoc = service.answer(title, ECDSA, stoc, service.challenge(32), actor=ACTOR).response
    assert meter.apply(reply_to_hls_authentication(f_stoc)) == refusal(ActionResult.OTHER_REASON)
    assert not meter.authenticated
    assert meter.last_refusal is not None and "f(StoC)" in meter.last_refusal


@SUITES
def test_the_kms_refuses_a_wrong_f_ctos(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication, suite: int
) -> None:
    certified = certify(pki, tmp_path, 86 + suite, suite, hes_certificate(pki.kms, suite))
    meter, title = certified.meter, certified.field.system_title
    ctos = service.challenge(48)
    stoc = meter.associate(CLIENT, ctos)
    assert stoc is not None
    f_ctos = returned(
        meter.apply(
            reply_to_hls_authentication(
                service.answer(title, ECDSA, stoc, ctos, actor=ACTOR).response
            )
        )
    )
    flipped = f_ctos[:-1] + bytes([f_ctos[-1] ^ 1])
    wrong = [
        (ctos, stoc, flipped),
        (ctos, stoc, f_ctos[1:]),
        (service.challenge(48), stoc, f_ctos),  # another CtoS: not an answer to this one
        (ctos, bytes(b ^ 1 for b in stoc), f_ctos),  # another StoC
        (stoc, ctos, f_ctos),  # the challenges swapped
    ]
    for client_challenge, server_challenge, response in wrong:
        with pytest.raises(AuthenticationFailed):
            service.check(title, ECDSA, client_challenge, server_challenge, response, actor=ACTOR)
    assert service.check(title, ECDSA, ctos, stoc, f_ctos, actor=ACTOR) is None


def test_a_meters_answer_does_not_authenticate_another_meter(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication
) -> None:
    hes = hes_certificate(pki.kms, 1)
    first, second = certify(pki, tmp_path, 90, 1, hes), certify(pki, tmp_path, 91, 1, hes)
    ctos = service.challenge(32)
    stoc = first.meter.associate(CLIENT, ctos)
    assert stoc is not None
    f_stoc = service.answer(first.field.system_title, ECDSA, stoc, ctos, actor=ACTOR).response
    f_ctos = returned(first.meter.apply(reply_to_hls_authentication(f_stoc)))
    with pytest.raises(AuthenticationFailed):
        service.check(second.field.system_title, ECDSA, ctos, stoc, f_ctos, actor=ACTOR)
    # And the head-end's answer to the first meter is refused by the second.
    assert second.meter.associate(CLIENT, ctos, stoc=stoc) == stoc
    assert second.meter.apply(reply_to_hls_authentication(f_stoc)) == refusal(
        ActionResult.OTHER_REASON
    )


@SUITES
def test_without_the_head_ends_certificate_the_meter_refuses(
    pki: Pki, tmp_path: Path, service: TokenHlsAuthentication, suite: int
) -> None:
    certified = certify(pki, tmp_path, 92 + suite, suite, None)
    meter, title = certified.meter, certified.field.system_title
    hes_certificate(pki.kms, suite)  # the KMS has its key and certificate; the meter has not
    # A certificate of another head-end (another system title) does not stand in for it.
    other = hes_certificate(pki.kms, suite, bytes.fromhex("4B4D5300000000B2"))
    assert meter.apply(import_certificate_request(other)) == SUCCESS
    ctos = service.challenge(32)
    stoc = meter.associate(CLIENT, ctos)
    assert stoc is not None
    f_stoc = service.answer(title, ECDSA, stoc, ctos, actor=ACTOR).response
    assert meter.apply(reply_to_hls_authentication(f_stoc)) == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal == f"no digital signature certificate for client {CLIENT.hex()}"


def test_a_certificate_of_the_other_suite_is_refused(pki: Pki, tmp_path: Path) -> None:
    """A suite 2 meter is given the suite 1 head-end certificate (P-256): refused, though it
    chains to the root the meter trusts once the suite 1 issuing CA is imported too."""
    certified = certify(pki, tmp_path, 95, 2, None)
    meter = certified.meter
    p256 = hes_certificate(pki.kms, 1)
    assert meter.apply(import_certificate_request(p256)) == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal == "certificate is not signed by a trusted authority"
    suite_1_issuing, _root = pki.kms.services.certificates.chain(SecuritySuite(1))
    assert meter.apply(import_certificate_request(suite_1_issuing)) == SUCCESS
    assert meter.apply(import_certificate_request(p256)) == refusal(ActionResult.OTHER_REASON)
    assert meter.last_refusal == "certificate key is not on the suite 2 curve"
