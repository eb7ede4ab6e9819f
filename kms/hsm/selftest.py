"""Known-answer tests run inside the token before the KMS trusts it.

Two vectors, each with throwaway session keys of known value (never a real key):

* RFC 3394 section 4.1: AES-128 key wrap of 00112233..FF under 000102..0F gives
  1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5 (also docs/dlms-security.md 8.4).
* Green Book Ed. 8.x Table 40 (docs/dlms-security.md 8.1): glo-get-request with SC 0x30, i.e.
  AES-GCM-128 with IV = system title || IC and AAD = SC || AK, ciphertext 411312FF..BC and tag
  7D825C3B..6B.

A token that fails either is refused: the KMS would otherwise write keys no meter can use.
"""

from __future__ import annotations

from dataclasses import dataclass

from kms.errors import CryptoError
from kms.hsm.adapter import Hsm
from kms.hsm.templates import KeyUse


@dataclass(frozen=True)
class SelfTestResult:
    """Outcome of one known-answer test."""

    name: str
    passed: bool
    detail: str


_KW_KEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
_KW_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
_KW_WRAPPED = bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")

_GB_EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
_GB_AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
_GB_IV = bytes.fromhex("4D4D4D0000BC614E01234567")
_GB_APDU = bytes.fromhex("C0010000080000010000FF0200")
_GB_OUT = bytes.fromhex("411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")


def _key_wrap(hsm: Hsm) -> SelfTestResult:
    kek = hsm.load_known_key(_KW_KEK)
    key = hsm.load_known_key(_KW_KEY)
    try:
        wrapped = hsm.wrap_key(kek, key)
        unwrapped = hsm.unwrap_key(kek, wrapped, KeyUse.EK, 16)
        # SoftHSM sets no CKA_CHECK_VALUE on an unwrapped key: compare by wrapping it again.
        same = hsm.wrap_key(kek, unwrapped) == wrapped
        hsm.destroy(unwrapped)
    finally:
        hsm.destroy(kek)
        hsm.destroy(key)
    ok = wrapped == _KW_WRAPPED and same
    return SelfTestResult(
        "RFC 3394 4.1 AES key wrap", ok, "wrap and unwrap match" if ok else "mismatch"
    )


def _gcm(hsm: Hsm) -> SelfTestResult:
    ek = hsm.load_known_key(_GB_EK)
    try:
        out = hsm.gcm_encrypt(ek, _GB_IV, b"\x30" + _GB_AK, _GB_APDU, 96)
        back = hsm.gcm_decrypt(ek, _GB_IV, b"\x30" + _GB_AK, out, 96)
    finally:
        hsm.destroy(ek)
    ok = out == _GB_OUT and back == _GB_APDU
    return SelfTestResult(
        "Green Book 8.1 GCM (SC 0x30)", ok, "ciphertext and tag match" if ok else "mismatch"
    )


def run_selftest(hsm: Hsm) -> list[SelfTestResult]:
    """Run every known-answer test; a test that raises counts as failed, with the error named."""
    results = []
    for test in (_key_wrap, _gcm):
        try:
            results.append(test(hsm))
        except CryptoError as exc:
            results.append(SelfTestResult(test.__name__.strip("_"), False, exc.code))
    return results
