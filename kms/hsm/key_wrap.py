"""AES key wrap in the token: how per-meter keys and HLS secrets leave it and come back.

A per-meter key is stored wrapped under the storage key, and sent wrapped under the meter's KEK,
with RFC 3394 (``CKM_AES_KEY_WRAP``, the profile's ``key_wrap`` job): ``C_WrapKey`` is the only
way out of the token a per-meter key has (:mod:`kms.hsm.templates`). An HLS secret (mechanism 6)
is any length from 1 to 64 bytes, so it wraps with RFC 3394 when its length allows and with
RFC 5649 (``key_wrap_pad``) otherwise. What SoftHSM 2.6.1 does decides the rest (measured):

* A blob that fails the integrity check of either RFC (another key, corrupted) is a bare
  ``CKR_GENERAL_ERROR``: :class:`~kms.errors.InvalidUnwrap` here.
* Its RFC 5649 unwrap keeps the padding: the secret comes back rounded up to 8 bytes, of which
  the first ``length`` are the secret (the profile flag ``wrap_pad_unwrap_keeps_padding``). So
  :func:`secret_wrap_is_exact` says which secrets come back exact, and the caller of
  :func:`unwrap_secret` knows when to cut.

Unwrapped keys are session objects with the template of their :class:`~kms.hsm.KeyUse`.

Exports the operations :class:`kms.hsm.Hsm` offers as methods (:func:`wrap_key`,
:func:`unwrap_key`, :func:`secret_wrap_is_exact`, :func:`wrap_secret`, :func:`unwrap_secret`).
"""

from __future__ import annotations

from typing import Any

import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from kms import errors
from kms.hsm import templates
from kms.hsm._token_access import TokenAccess
from kms.hsm.session import Key, SessionKey
from kms.hsm.templates import KeyUse

__all__ = ["secret_wrap_is_exact", "unwrap_key", "unwrap_secret", "wrap_key", "wrap_secret"]


def wrap_key(hsm: TokenAccess, wrapping_key: Key, key_to_wrap: SessionKey) -> bytes:
    """RFC 3394 wrap of a session key under ``wrapping_key``."""
    mech = hsm.profile.mechanism("key_wrap")
    return bytes(
        hsm.call(
            "wrap key",
            lambda: hsm.resolve(wrapping_key).wrap_key(hsm.resolve(key_to_wrap), mechanism=mech),
        )
    )


def unwrap_key(
    hsm: TokenAccess, unwrapping_key: Key, wrapped_key: bytes, use: KeyUse, length: int
) -> SessionKey:
    """RFC 3394 unwrap into a session key for ``use``; a blob of the wrong length or one that
    fails the integrity check is :class:`~kms.errors.InvalidUnwrap`."""
    if len(wrapped_key) != length + 8:
        raise errors.InvalidUnwrap("wrapped key has the wrong length")
    obj = _unwrap(
        hsm,
        "unwrap key",
        unwrapping_key,
        wrapped_key,
        KeyType.AES,
        hsm.profile.mechanism("key_wrap"),
        templates.SESSION_KEYS[use],
    )
    return hsm.session_key(obj, length, use)


def secret_wrap_is_exact(length: int) -> bool:
    """Whether a secret of ``length`` bytes wraps with RFC 3394, which unwraps exactly (else
    RFC 5649, whose unwrap SoftHSM leaves padded: module docstring)."""
    return length >= 16 and length % 8 == 0


def wrap_secret(hsm: TokenAccess, wrapping_key: Key, secret: SessionKey) -> bytes:
    """An HLS secret wrapped under ``wrapping_key``: RFC 3394 if its length allows, else 5649."""
    mech = _secret_mechanism(hsm, secret.length)
    return bytes(
        hsm.call(
            "wrap HLS secret",
            lambda: hsm.resolve(wrapping_key).wrap_key(hsm.resolve(secret), mechanism=mech),
        )
    )


def unwrap_secret(
    hsm: TokenAccess, unwrapping_key: Key, wrapped: bytes, length: int, *, readable: bool
) -> SessionKey:
    """An HLS secret unwrapped for use: sensitive (for C_DigestKey) unless ``readable``."""
    obj = _unwrap(
        hsm,
        "unwrap HLS secret",
        unwrapping_key,
        wrapped,
        KeyType.GENERIC_SECRET,
        _secret_mechanism(hsm, length),
        templates.secret_for_use(readable=readable),
    )
    return hsm.session_key(obj, length, KeyUse.SECRET)


def _secret_mechanism(hsm: TokenAccess, length: int) -> Mechanism:
    return hsm.profile.mechanism("key_wrap" if secret_wrap_is_exact(length) else "key_wrap_pad")


def _unwrap(
    hsm: TokenAccess,
    operation: str,
    unwrapping_key: Key,
    wrapped: bytes,
    key_type: KeyType,
    mechanism: Mechanism,
    template: dict[Attribute, Any],
) -> Any:
    """C_UnwrapKey into a session object; a failed integrity check is InvalidUnwrap."""

    def unwrap() -> Any:
        try:
            return hsm.resolve(unwrapping_key).unwrap_key(
                ObjectClass.SECRET_KEY,
                key_type,
                wrapped,
                mechanism=mechanism,
                capabilities=MechanismFlag(0),
                template=template,
            )
        except p11e.GeneralError:
            # SoftHSM answers a failed RFC 3394/5649 integrity check with CKR_GENERAL_ERROR.
            raise errors.InvalidUnwrap(f"{operation}: integrity check failed") from None

    return hsm.call(operation, unwrap)
