"""Every ciphering vector of tests/vectors through the token's GCM (kms.hsm.TokenGcm), and the
Green Book HLS-GMAC vector: the token, not pyca, must produce and check the published bytes.

Keys of known value enter as throwaway session objects (``load_known_key``, the self-test's
path); nothing here is a real key.
"""

from __future__ import annotations

import pytest

from kms.dlms.hls import gmac_response, verify_gmac_response
from kms.dlms.protection import protect, unprotect
from kms.dlms.security_control import SecurityControl
from kms.dlms.suites import SecuritySuite
from kms.errors import InvalidTag
from kms.hsm import Hsm
from tests.dlms.protection_vectors import CipheringVector, ciphering_vectors, hls_gmac_vectors
from tests.dlms.test_vectors_protection import envelope, rebuild

VECTORS = ciphering_vectors()


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.id)
def test_token_gcm_reproduces_and_checks_the_vector(hsm: Hsm, vector: CipheringVector) -> None:
    key = hsm.load_known_key(vector.ek)
    try:
        cipher = hsm.aead(key)
        sc, ic, payload = envelope(vector)
        if vector.fail:
            with pytest.raises(InvalidTag):
                unprotect(cipher, sc, vector.system_title, ic, vector.ak, payload)
            return
        ours = protect(
            cipher,
            SecurityControl.from_byte(vector.security_control),
            vector.system_title,
            vector.invocation_counter,
            vector.ak,
            vector.apdu,
        )
        assert rebuild(vector, ours) == vector.ciphered
        assert unprotect(cipher, sc, vector.system_title, ic, vector.ak, payload) == vector.apdu
    finally:
        hsm.destroy(key)


@pytest.mark.parametrize(
    "case", hls_gmac_vectors(), ids=lambda c: "fail" if c.get("fail") else "ok"
)
def test_token_gmac_reproduces_the_green_book_hls_vector(hsm: Hsm, case: dict[str, bytes]) -> None:
    key = hsm.load_known_key(case["ek"])
    suite = SecuritySuite.AES_GCM_128
    try:
        cipher = hsm.aead(key)
        if case.get("fail"):
            with pytest.raises(InvalidTag):
                verify_gmac_response(
                    cipher, suite, case["server_system_title"], case["ak"], case["ctos"],
                    case["f_ctos"],
                )  # fmt: skip
            return
        client_ic = int.from_bytes(case["client_ic"], "big")
        f_stoc = gmac_response(
            cipher, suite, case["client_system_title"], client_ic, case["ak"], case["stoc"]
        )
        assert f_stoc == case["f_stoc"]
        server_ic = verify_gmac_response(
            cipher, suite, case["server_system_title"], case["ak"], case["ctos"], case["f_ctos"]
        )
        assert server_ic == int.from_bytes(case["server_ic"], "big")
    finally:
        hsm.destroy(key)


def test_token_gcm_takes_a_bytearray_plaintext_as_one_message(hsm: Hsm) -> None:
    # python-pkcs11 streams a bytearray as chunks; TokenGcm must cipher it as one message.
    (vector, *_) = [v for v in VECTORS if v.security_control == 0x30 and not v.fail]
    key = hsm.load_known_key(vector.ek)
    try:
        cipher = hsm.aead(key)
        iv = vector.system_title + vector.invocation_counter.to_bytes(4, "big")
        aad = bytes([0x30]) + vector.ak
        assert cipher.encrypt(iv, aad, bytearray(vector.apdu)) == cipher.encrypt(
            iv, aad, vector.apdu
        )
        assert vector.ciphered.endswith(cipher.encrypt(iv, aad, bytearray(vector.apdu)))
    finally:
        hsm.destroy(key)
