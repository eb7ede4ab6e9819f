"""Test helpers for the simulated meter's public-key methods, independent of ``kms``: the
action-requests of security setup methods 4..6 and of reply_to_HLS_authentication written out
byte by byte, the action-responses read with dlms-cosem, and a small pyca CA.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dlms_cosem.protocol.xdlms.action import ActionResponseFactory, ActionResponseNormalWithData

from tests.interop.meter import ASSOCIATION_LN, MANAGEMENT_SETUP, ActionResult, KeyPairType

__all__ = [
    "SUCCESS",
    "Ca",
    "action_request",
    "common_name",
    "generate_csr",
    "generate_key_pair",
    "import_certificate",
    "octet_string",
    "refusal",
    "reply_to_hls",
    "returned",
]

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def action_request(method: int, class_id: int = 64, ln: bytes = MANAGEMENT_SETUP) -> bytes:
    return bytes([0xC3, 0x01, 0xC1]) + class_id.to_bytes(2, "big") + ln + bytes([method, 0x01])


def octet_string(value: bytes) -> bytes:
    if len(value) < 0x80:
        return b"\x09" + bytes([len(value)]) + value
    if len(value) < 0x100:
        return b"\x09\x81" + bytes([len(value)]) + value
    return b"\x09\x82" + len(value).to_bytes(2, "big") + value


def generate_key_pair(kind: int) -> bytes:
    return action_request(4) + bytes([0x16, kind])


def generate_csr(kind: int) -> bytes:
    return action_request(5) + bytes([0x16, kind])


def import_certificate(der: bytes) -> bytes:
    return action_request(6) + octet_string(der)


def reply_to_hls(f_stoc: bytes) -> bytes:
    return action_request(1, 15, ASSOCIATION_LN) + octet_string(f_stoc)


def refusal(result: int) -> bytes:
    return bytes([0xC7, 0x01, 0xC1, result, 0x00])


SUCCESS = refusal(ActionResult.SUCCESS)


def returned(response: bytes) -> bytes:
    """The octet-string an action-response-normal returns, read by dlms-cosem."""
    parsed = ActionResponseFactory.from_bytes(response)
    assert isinstance(parsed, ActionResponseNormalWithData), response.hex()
    assert parsed.status == 0
    data = bytes(parsed.data)
    assert data[0] == 0x09
    if data[1] < 0x80:
        start, size = 2, data[1]
    else:
        start = 2 + (data[1] & 0x7F)
        size = int.from_bytes(data[2:start], "big")
    assert len(data) == start + size
    return data[start:]


# --- a pyca CA -----------------------------------------------------------------------------------


def common_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Ca:
    """A CA key and certificate: self-signed, or signed by ``parent``."""

    def __init__(self, curve: ec.EllipticCurve, cn: str = "Test CA", parent: Ca | None = None):
        self.key = ec.generate_private_key(curve)
        self.hash = hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256()
        self.name = common_name(cn)
        signer = parent or self
        self.certificate = (
            signer._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer.key, signer.hash)
        )
        self.der = self.certificate.public_bytes(serialization.Encoding.DER)

    def _builder(self, subject: x509.Name, key: Any, days: int = 30) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=days))
        )

    def issue(
        self,
        cn: str,
        key: Any,
        kind: KeyPairType = KeyPairType.DIGITAL_SIGNATURE,
        *,
        days: int = 30,
        critical: bool = True,
    ) -> bytes:
        signs, agrees = kind in (0, 2), kind in (1, 2)
        usage = x509.KeyUsage(signs, False, False, False, agrees, False, False, False, False)
        builder = self._builder(common_name(cn), key, days).add_extension(usage, critical=critical)
        if kind is KeyPairType.TLS:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(self.key, self.hash).public_bytes(serialization.Encoding.DER)

    def issue_from_csr(self, csr_der: bytes, kind: KeyPairType, **kwargs: Any) -> bytes:
        csr = x509.load_der_x509_csr(csr_der)
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert isinstance(cn, str)
        return self.issue(cn, csr.public_key(), kind, **kwargs)
