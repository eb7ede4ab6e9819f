"""The ciphering vector files of tests/vectors, loaded once, shared by the pure tests and the
token tests (one loader, parametrised, failure cases included)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag as PycaInvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kms.errors import InvalidTag
from tests.utils import load_nist_vectors, load_vectors_from_file

#: Every file holding whole ciphered APDUs (EK, AK, SYSTEM_TITLE, IC, SC, APDU, CIPHERED).
CIPHERING_FILES = (
    "dlms/gb-ed8/table40_glo_get_request.txt",
    "dlms/gb-ed8/glo_initiate_request.txt",
    "dlms/dlms-cosem/general_glo_ciphering.txt",
    "custom/gcm-suites-1-2/vectors.txt",
)
HLS_GMAC_FILE = "dlms/gb-ed8/table43_hls_gmac.txt"


@dataclass(frozen=True)
class CipheringVector:
    """One case of a ciphering file."""

    source: str
    count: int
    ek: bytes
    ak: bytes
    system_title: bytes
    invocation_counter: int
    security_control: int
    apdu: bytes
    ciphered: bytes
    fail: bool

    @property
    def id(self) -> str:
        return f"{self.source.rsplit('/', 1)[-1].removesuffix('.txt')}-{self.count}"


def ciphering_vectors() -> list[CipheringVector]:
    out = []
    for source in CIPHERING_FILES:
        for count, case in enumerate(load_vectors_from_file(source, load_nist_vectors)):
            out.append(
                CipheringVector(
                    source,
                    count,
                    bytes.fromhex(case["ek"]),
                    bytes.fromhex(case["ak"]),
                    bytes.fromhex(case["system_title"]),
                    int(case["ic"], 16),
                    int(case["sc"], 16),
                    bytes.fromhex(case["apdu"]),
                    bytes.fromhex(case["ciphered"]),
                    bool(case.get("fail")),
                )
            )
    return out


def hls_gmac_vectors() -> list[dict[str, object]]:
    cases = load_vectors_from_file(HLS_GMAC_FILE, load_nist_vectors)
    return [
        {k: (v if k == "fail" else bytes.fromhex(v)) for k, v in case.items()} for case in cases
    ]


class PycaGcm:
    """kms.dlms.protection.AuthenticatedEncryption by pyca/cryptography: the oracle."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._key = key

    def encrypt(self, iv: bytes, aad: bytes | bytearray, plaintext: bytes) -> bytes:
        sealed = self._aead.encrypt(iv, plaintext, bytes(aad))
        return sealed[: len(plaintext) + 12]

    def decrypt(self, iv: bytes, aad: bytes | bytearray, ciphertext: bytes, tag: bytes) -> bytes:
        # pyca takes only a full 16-byte tag: recompute it and compare its first 12 bytes.
        plaintext = self._aead.encrypt(iv, ciphertext, b"")[: len(ciphertext)]
        full = self._aead.encrypt(iv, plaintext, bytes(aad))[len(plaintext) :]
        if full[:12] != tag:
            raise InvalidTag("GCM tag did not verify")
        try:
            return self._aead.decrypt(iv, ciphertext + full, bytes(aad))
        except PycaInvalidTag:  # pragma: no cover - cannot happen after the comparison
            raise InvalidTag("GCM tag did not verify") from None
