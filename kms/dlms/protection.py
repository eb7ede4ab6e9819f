"""Cryptographic protection of xDLMS APDUs with AES-GCM: DLMS UA 1000-2 Ed. 8.x ("Green Book") /
IEC 62056-5-3, clause 9.2 (the security suites' authenticated encryption: the initialization
vector, the additional authenticated data and the ciphered content by security control); see
docs/dlms-security.md sections 2.2 and 2.3 (clause numbers not checked against a copy of the
standard).

What the security control byte (SC) asks for, and what GCM gets (AK: the authentication key,
IC: the invocation counter, T: the 12 leftmost bytes of the GCM tag)::

    SC A/E      GCM plaintext   AAD                         carried after SC || IC
    A=1 E=0     empty           SC || AK || extra || APDU   APDU || T
    A=0 E=1     APDU            none (no tag)               C
    A=1 E=1     APDU            SC || AK || extra           C || T

The IV is the originator's system title (8 bytes) || IC (4 bytes, big-endian), in every suite.
``extra`` is empty for the service-specific glo-/ded- APDUs and for general-glo/ded-ciphering;
general-ciphering (0xDD) adds its own fields there (:mod:`kms.dlms.general_ciphering`). An SC
that asks for neither authentication nor encryption protects nothing and is refused.

The cipher is not here: the caller passes an :class:`AuthenticatedEncryption` (the token's GCM in
the KMS, pyca/cryptography in the tests), so this module stays pure and the Green Book vectors
replay against both. Decrypting encryption-only content needs no tag and no decrypt call: GCM's
ciphertext is CTR-mode keystream from the same IV, so encrypting C again yields the APDU, and the
token never has to offer an unauthenticated decrypt.

For a sender that protects many APDUs with one key, SC and originator (the head-end's hot path)
:class:`PreparedProtection` does the same per APDU with everything fixed computed once: the
AAD prefix SC || AK is built at preparation (and zeroised by :meth:`PreparedProtection.close`),
so an APDU costs the IV, one cipher call and nothing else.

Exports: :data:`TAG_LENGTH`, :class:`AuthenticatedEncryption`, :func:`initialization_vector`,
:func:`protect`, :func:`unprotect`, :class:`PreparedProtection`.
"""

from __future__ import annotations

from typing import Protocol

from kms.dlms.security_control import SecurityControl, check_invocation_counter
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH
from kms.errors import InputError
from kms.memory import zeroise

__all__ = [
    "TAG_LENGTH",
    "AuthenticatedEncryption",
    "PreparedProtection",
    "initialization_vector",
    "protect",
    "unprotect",
]

#: Length of the authentication tag T in every suite: GCM's tag truncated to 96 bits.
TAG_LENGTH = 12


class AuthenticatedEncryption(Protocol):
    """AES-GCM with one key and a 96-bit tag, wherever the key lives."""

    def encrypt(self, iv: bytes, aad: bytes | bytearray, plaintext: bytes) -> bytes:
        """``ciphertext || tag`` (tag of :data:`TAG_LENGTH` bytes)."""
        ...

    def decrypt(self, iv: bytes, aad: bytes | bytearray, ciphertext: bytes, tag: bytes) -> bytes:
        """The plaintext; raises :class:`kms.errors.InvalidTag` when the tag does not verify."""
        ...


def initialization_vector(system_title: bytes, invocation_counter: int) -> bytes:
    """System title (8 bytes) || IC (4 bytes, big-endian): the 12-byte GCM IV."""
    if not isinstance(system_title, bytes | bytearray | memoryview):
        raise TypeError(f"system_title must be bytes, not {type(system_title).__name__}")
    if len(system_title) != SYSTEM_TITLE_LENGTH:
        raise ValueError(f"system_title must be 8 bytes, got {len(system_title)}")
    check_invocation_counter(invocation_counter)
    return bytes(system_title) + invocation_counter.to_bytes(4, "big")


def protect(
    cipher: AuthenticatedEncryption,
    security_control: SecurityControl,
    system_title: bytes,
    invocation_counter: int,
    authentication_key: bytes | bytearray,
    apdu: bytes,
    extra_aad: bytes = b"",
) -> bytes:
    """What follows the security header: ``C || T``, ``C`` or ``APDU || T`` by SC.

    ``system_title`` is the originator's. An SC with neither A nor E set is a caller bug
    (``ValueError``): the KMS never sends an unprotected "ciphered" APDU.
    """
    _check_protects(security_control)
    iv = initialization_vector(system_title, invocation_counter)
    if not security_control.authentication:
        return cipher.encrypt(iv, b"", apdu)[: len(apdu)]
    if security_control.encryption:
        aad = _aad(security_control, authentication_key, extra_aad)
        try:
            return cipher.encrypt(iv, aad, apdu)
        finally:
            zeroise(aad)
    aad = _aad(security_control, authentication_key, extra_aad, apdu)
    try:
        return bytes(apdu) + cipher.encrypt(iv, aad, b"")
    finally:
        zeroise(aad)


def unprotect(
    cipher: AuthenticatedEncryption,
    security_control: SecurityControl,
    system_title: bytes,
    invocation_counter: int,
    authentication_key: bytes | bytearray,
    payload: bytes,
    extra_aad: bytes = b"",
) -> bytes:
    """The APDU carried in ``payload`` (what follows SC || IC), its tag checked where SC asks.

    A payload too short to hold the tag, or an SC asking for no protection, is malformed input
    (:class:`~kms.errors.InputError`, field ``payload`` / ``security_control``); a tag that does
    not verify raises :class:`~kms.errors.InvalidTag` from the cipher, and says nothing more.
    """
    if not (security_control.authentication or security_control.encryption):
        raise InputError(
            f"security control 0x{security_control.to_byte():02x} asks for neither "
            "authentication nor encryption",
            field="security_control",
        )
    iv = initialization_vector(system_title, invocation_counter)
    if not security_control.authentication:
        # CTR symmetry: encrypting C with the same IV gives the APDU back (module docstring).
        return cipher.encrypt(iv, b"", payload)[: len(payload)]
    if len(payload) < TAG_LENGTH:
        raise InputError(
            f"{len(payload)} byte(s) after the security header cannot hold the "
            f"{TAG_LENGTH}-byte authentication tag",
            field="payload",
        )
    body, tag = payload[:-TAG_LENGTH], payload[-TAG_LENGTH:]
    if security_control.encryption:
        aad = _aad(security_control, authentication_key, extra_aad)
        try:
            return cipher.decrypt(iv, aad, body, tag)
        finally:
            zeroise(aad)
    aad = _aad(security_control, authentication_key, extra_aad, body)
    try:
        cipher.decrypt(iv, aad, b"", tag)
        return bytes(body)
    finally:
        zeroise(aad)


class PreparedProtection:
    """:func:`protect` for one cipher, SC, originator and AK, prepared once (module docstring).

    Owns a copy of SC || AK || extra (the AAD prefix); :meth:`close` zeroises it, and a closed
    instance refuses to protect. The caller hands out invocation counters and frames the result.
    """

    __slots__ = ("_cipher", "_encryption", "_mode", "_prefix", "_system_title")

    def __init__(
        self,
        cipher: AuthenticatedEncryption,
        security_control: SecurityControl,
        system_title: bytes,
        authentication_key: bytes | bytearray,
        extra_aad: bytes = b"",
    ) -> None:
        _check_protects(security_control)
        initialization_vector(system_title, 0)  # checks the system title once
        self._cipher = cipher
        self._system_title = bytes(system_title)
        if security_control.authentication:
            self._prefix: bytearray | None = _aad(security_control, authentication_key, extra_aad)
        else:
            self._prefix = bytearray()
        self._mode = (security_control.authentication, security_control.encryption)

    def protect(self, invocation_counter: int, apdu: bytes) -> bytes:
        """What follows SC || IC for ``apdu`` at ``invocation_counter`` (0..2**32 - 1)."""
        prefix = self._prefix
        if prefix is None:
            raise ValueError("this PreparedProtection was closed")
        iv = self._system_title + invocation_counter.to_bytes(4, "big")
        authentication, encryption = self._mode
        if authentication and encryption:
            return self._cipher.encrypt(iv, prefix, apdu)
        if encryption:
            return self._cipher.encrypt(iv, b"", apdu)[: len(apdu)]
        aad = prefix + apdu
        try:
            return bytes(apdu) + self._cipher.encrypt(iv, aad, b"")
        finally:
            zeroise(aad)

    def close(self) -> None:
        """Zeroise the AAD prefix (it holds the AK); the instance is unusable afterwards."""
        if self._prefix is not None:
            zeroise(self._prefix)
            self._prefix = None


def _aad(
    security_control: SecurityControl, authentication_key: bytes | bytearray, *rest: bytes
) -> bytearray:
    """SC || AK || rest in a buffer the caller zeroises after use: it holds the AK's bytes.

    (The cipher may copy it on its way to the token; this keeps the KMS's own copy short-lived.)
    """
    aad = bytearray([security_control.to_byte()])
    aad += authentication_key
    for part in rest:
        aad += part
    return aad


def _check_protects(security_control: SecurityControl) -> None:
    if not isinstance(security_control, SecurityControl):
        raise TypeError(
            f"security_control must be SecurityControl, not {type(security_control).__name__}"
        )
    if not (security_control.authentication or security_control.encryption):
        raise ValueError(
            f"security control 0x{security_control.to_byte():02x} asks for neither "
            "authentication nor encryption"
        )
