"""AES-GCM in the token under one session key: the cipher of :mod:`kms.dlms.protection`.

Implements :class:`kms.dlms.protection.AuthenticatedEncryption` with DLMS's 96-bit tag (T, the
12 leftmost bytes of the GCM tag, in every suite). The mechanism is fixed once per key, off the
per-APDU path; every call goes through the session's lock and error translation, and a tag that
does not verify (SoftHSM answers a bare ``CKR_GENERAL_ERROR``) is
:class:`~kms.errors.InvalidTag`. GMAC is GCM with an empty plaintext.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pkcs11.exceptions as p11e
from pkcs11 import Mechanism
from pkcs11.mechanisms import GCMParams

from kms import errors

if TYPE_CHECKING:
    from kms.hsm._token_access import TokenAccess
    from kms.hsm.session import SessionKey

__all__ = ["TokenGcm"]


class TokenGcm:
    """AES-GCM in the token under one session key, with DLMS's 96-bit tag unless told otherwise
    (module docstring)."""

    __slots__ = ("_hsm", "_key", "_mechanism", "_tag_bits")

    def __init__(
        self, hsm: TokenAccess, key: SessionKey, mechanism: Mechanism, tag_bits: int = 96
    ) -> None:
        self._hsm = hsm
        self._key = key
        self._mechanism = mechanism
        self._tag_bits = tag_bits

    def encrypt(self, iv: bytes, aad: bytes | bytearray, plaintext: bytes) -> bytes:
        """``ciphertext || tag``; an empty ``plaintext`` makes this GMAC."""
        params = GCMParams(iv, _buffer(aad), self._tag_bits)
        hsm, key, mech = self._hsm, self._key, self._mechanism
        if type(plaintext) is not bytes:
            # python-pkcs11 takes any other buffer (a bytearray) for an iterable of chunks and
            # streams it: one-shot GCM needs bytes.
            plaintext = bytes(plaintext)

        def encrypt() -> bytes:
            result: bytes = hsm.resolve(key).encrypt(
                plaintext, mechanism=mech, mechanism_param=params
            )
            return result

        return hsm.call("GCM encrypt", encrypt)

    def decrypt(self, iv: bytes, aad: bytes | bytearray, ciphertext: bytes, tag: bytes) -> bytes:
        """The plaintext; a tag that does not verify raises :class:`~kms.errors.InvalidTag`."""
        params = GCMParams(iv, _buffer(aad), self._tag_bits)
        hsm, mech = self._hsm, self._mechanism
        data = bytes(ciphertext) + bytes(tag)

        def decrypt() -> bytes:
            try:
                return bytes(
                    hsm.resolve(self._key).decrypt(data, mechanism=mech, mechanism_param=params)
                )
            except (p11e.GeneralError, p11e.EncryptedDataInvalid, p11e.DataInvalid):
                # SoftHSM reports a GCM tag mismatch as a bare CKR_GENERAL_ERROR.
                raise errors.InvalidTag("GCM tag did not verify") from None

        return hsm.call("GCM decrypt", decrypt)


def _buffer(aad: bytes | bytearray) -> bytes:
    """The AAD as python-pkcs11 takes it, without a copy: its Cython cast reads a bytearray's
    buffer as well as a bytes object's, so a caller's zeroisable AAD (it holds the AK) reaches
    the token as is. Only the annotation is narrowed."""
    return cast(bytes, aad)
