"""PKCS#11 attribute templates, written out in full for every kind of key the KMS makes.

python-pkcs11's default capabilities give an AES key encrypt, sign and wrap at once; the style
rule is that a key gets only what its job needs. Root keys are token objects, ``CKA_SENSITIVE``
and not extractable (docs/architecture.md, invariant 2).
Per-meter keys are sensitive session objects that
*are* extractable, because ``C_WrapKey`` (under the storage key or the meter's KEK) is their only
way out of the token; the AK is the named exception of docs/token.md section 8 (readable when
unwrapped for use, never when generated). Key agreement (:mod:`kms.hsm.ecdh`) adds derive-only EC
private keys (static token objects and ephemeral session objects), Z as a secret that can do
nothing, and agreed keys ``*_FOR_USE`` that never leave the token.
"""

from __future__ import annotations

import enum
from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.constants import DEFAULT


class KeyUse(enum.Enum):
    """What a per-meter session key may do; decides its template."""

    KEK = "KEK"  # master key: wraps the global keys for key_transfer, is wrapped itself
    EK = "EK"  # GUEK, GBEK, dedicated: encrypt/decrypt (GCM)
    EK_FOR_USE = "EK_FOR_USE"  # an EK unwrapped to protect APDUs: GCM only, never extractable
    AK = "AK"  # authentication key: AAD material, no mechanism of its own
    AK_FOR_USE = "AK_FOR_USE"  # the AK unwrapped for use: readable by the protecting process
    DEDICATED = "DEDICATED"  # a dedicated key being made: read once into the initiate request
    SECRET = "SECRET"  # noqa: S105 - an HLS secret (mechanism 6), fed to C_DigestKey
    KEK_FOR_USE = "KEK_FOR_USE"  # an agreed KEK: wraps and unwraps, never extractable
    EPHEMERAL = "EPHEMERAL"  # an ephemeral EC private key (key agreement): ECDH derive only


_NONE = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}


def _secret(label: str | None, key_id: bytes | None, *, token: bool) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.TOKEN: token,
        Attribute.PRIVATE: True,
        **_NONE,
    }
    if token:
        # SoftHSM refuses CKA_MODIFIABLE in an unwrap template (CKR_ATTRIBUTE_READ_ONLY), so only
        # token objects carry it.
        template[Attribute.MODIFIABLE] = False
    if label is not None:
        template[Attribute.LABEL] = label
    if key_id is not None:
        template[Attribute.ID] = key_id
    return template


def _token_wrapping_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    return {
        **_secret(label, key_id, token=True),
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
    }


def binding_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """Generic-secret token key for the HMAC that binds a blob to its row."""
    return {
        **_secret(label, key_id, token=True),
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.VERIFY: True,
    }


def storage_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """AES-256 token key that wraps and unwraps per-meter blobs, and nothing else."""
    return _token_wrapping_key(label, key_id)


def transport_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """A meter vendor's initial master key: wraps the meter's new KEK, is never extractable."""
    return _token_wrapping_key(label, key_id)


_NEVER_EXTRACTABLE_USES = (KeyUse.EK_FOR_USE, KeyUse.KEK_FOR_USE, KeyUse.EPHEMERAL)


def session_key(use: KeyUse) -> dict[Attribute, Any]:
    """A per-meter key as a session object, by what it is for."""
    template = {
        **_secret(None, None, token=False),
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET if use is KeyUse.SECRET else KeyType.AES,
        Attribute.SENSITIVE: use not in (KeyUse.AK_FOR_USE, KeyUse.DEDICATED),
        # A key in use has no reason to leave the token again: only keys being provisioned,
        # wrapped under the storage key and the meter's KEK, are extractable. EPHEMERAL is an EC
        # key (kms.hsm.ecdh makes it from ephemeral_private_key): as an AES key it gets nothing.
        Attribute.EXTRACTABLE: use not in _NEVER_EXTRACTABLE_USES,
    }
    if use in (KeyUse.KEK, KeyUse.KEK_FOR_USE):
        template[Attribute.WRAP] = True
        template[Attribute.UNWRAP] = True
    elif use in (KeyUse.EK, KeyUse.EK_FOR_USE):
        template[Attribute.ENCRYPT] = True
        template[Attribute.DECRYPT] = True
    return template


#: :func:`session_key` for every use, built once: python-pkcs11 merges a template into a new dict
#: per call and never changes it, and these sit on the provisioning hot path. Copy one before
#: adding to it.
SESSION_KEYS = {use: session_key(use) for use in KeyUse}


def secret_for_use(*, readable: bool = False) -> dict[Attribute, Any]:
    """An HLS secret unwrapped to answer a challenge: sensitive and never extractable, unless
    the profile's fallback hashes it on the host (``readable``, audited as such: PKCS#11 shows
    a value only when it is neither sensitive nor unextractable)."""
    return {
        **_secret(None, None, token=False),
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.SENSITIVE: not readable,
        Attribute.EXTRACTABLE: readable,
    }


def known_answer_key() -> dict[Attribute, Any]:
    """A throwaway session key of known value, for self-tests only (never a real key)."""
    return {
        **_secret("kms-selftest", None, token=False),
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: True,
        Attribute.ENCRYPT: True,
        Attribute.DECRYPT: True,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
    }


def ec_private_key(label: str, key_id: bytes, *, backup: bool = False) -> dict[Attribute, Any]:
    """Signing half of a token EC key pair (the audit key, CA keys, the KMS's signing keys).

    ``backup``: a CA key may leave the token once, wrapped under a ``CKA_TRUSTED`` key in a
    backup ceremony. PKCS#11 has no "extractable only to trusted keys" short of
    ``CKA_EXTRACTABLE`` with ``CKA_WRAP_WITH_TRUSTED``, which the token enforces (measured,
    docs/token.md section 11); ``CKA_TRUSTED`` can only be set by the security officer.
    """
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: backup,
        Attribute.WRAP_WITH_TRUSTED: backup,
        Attribute.MODIFIABLE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.SIGN_RECOVER: False,
        Attribute.SIGN: True,
    }


def ec_public_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """Verifying half of a token EC key pair."""
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.MODIFIABLE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
        Attribute.VERIFY_RECOVER: False,
        Attribute.DERIVE: False,
        Attribute.VERIFY: True,
    }


def data_object(label: str, value: bytes) -> dict[Attribute, Any]:
    """A private, modifiable token data object (the audit anchor): readable only after login."""
    return {
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.MODIFIABLE: True,
        Attribute.LABEL: label,
        Attribute.APPLICATION: "dlms-kms",
        Attribute.VALUE: value,
    }


# --- EC key agreement (kms.hsm.ecdh) -----------------------------------------------------------
# A key-agreement private key does CKM_ECDH1_DERIVE and nothing else: DLMS signs an ephemeral
# public key with the party's separate static *signing* key, never with a key-agreement key.


def key_agreement_private_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """Private half of a static key-agreement key pair (the KMS's own, a token object)."""
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.SIGN: False,
        Attribute.SIGN_RECOVER: False,
        Attribute.DERIVE: True,
    }


def key_agreement_public_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """Public half of a static key-agreement key pair: only its point is ever read."""
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.MODIFIABLE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
        Attribute.VERIFY: False,
        Attribute.VERIFY_RECOVER: False,
        Attribute.DERIVE: False,
    }


def ephemeral_private_key() -> dict[Attribute, Any]:
    """An ephemeral EC private key: a session object, derive only, never leaves the token."""
    return {
        Attribute.TOKEN: False,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.SIGN: False,
        Attribute.SIGN_RECOVER: False,
        Attribute.DERIVE: True,
    }


def ephemeral_public_key() -> dict[Attribute, Any]:
    """The public half of an ephemeral pair: read once for its point, then destroyed."""
    return {
        Attribute.TOKEN: False,
        Attribute.PRIVATE: False,
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
        Attribute.VERIFY: False,
        Attribute.VERIFY_RECOVER: False,
        Attribute.DERIVE: False,
    }


def known_answer_ec_private_key() -> dict[Attribute, Any]:
    """A throwaway EC private key of known value (a session object), for known-answer tests of
    key agreement only; the caller adds CKA_EC_PARAMS and CKA_VALUE."""
    return {
        **ephemeral_private_key(),
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.KEY_TYPE: KeyType.EC,
        Attribute.LABEL: "kms-selftest",
    }


def shared_secret(*, readable: bool = False) -> dict[Attribute, Any]:
    """Z, the ECDH shared secret, as a generic-secret session object that can do nothing.

    Sensitive and unextractable when the KDF hashes it in the token (C_DigestKey needs no
    capability); ``readable`` only for the profile's audited host KDF, which reads it once.
    """
    return {
        **_secret(None, None, token=False),
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.SENSITIVE: not readable,
        Attribute.EXTRACTABLE: readable,
    }


# --- CA key backup (kms.hsm.trusted_wrap) ------------------------------------------------------
# A CA private key made with ``ec_private_key(backup=True)`` leaves the token only under a
# CKA_TRUSTED key, and only the security officer (SO) can set CKA_TRUSTED. SoftHSM 2.6.1 lets the
# SO make public objects only (a private one is CKR_USER_NOT_LOGGED_IN) and keeps a public token
# object's CKA_VALUE in clear in the token file (both measured), so the SO makes the key as a
# public *session* object, which never reaches the disk, and the user copies it into a private
# token object: C_CopyObject keeps CKA_TRUSTED, and takes CKA_PRIVATE and CKA_TOKEN from the copy
# template only while the source is CKA_MODIFIABLE (else CKR_ATTRIBUTE_READ_ONLY).


def trusted_wrapping_key_by_so(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """The backup wrapping key as the SO makes it: an AES session object, public (the SO can
    make nothing else), trusted, wrap only, and modifiable so that the user can copy it private.
    The caller adds CKA_VALUE."""
    return {
        **_secret(label, key_id, token=False),
        Attribute.PRIVATE: False,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.TRUSTED: True,
        Attribute.WRAP: True,
        Attribute.MODIFIABLE: True,
    }


def trusted_wrapping_key_copy() -> dict[Attribute, Any]:
    """C_CopyObject template that turns the SO's session key into the lasting token key.

    SoftHSM applies a copy template in order, and once CKA_MODIFIABLE is false it refuses every
    later attribute (measured): CKA_MODIFIABLE stays last.
    """
    return {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.MODIFIABLE: False}


def backup_unwrapping_key() -> dict[Attribute, Any]:
    """The backup wrapping key rebuilt at a restore: a session object that can only unwrap (it
    dies with the ceremony's session). The caller adds CKA_VALUE."""
    return {
        **_secret(None, None, token=False),
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.UNWRAP: True,
    }


def restored_ec_private_key(label: str, key_id: bytes) -> dict[Attribute, Any]:
    """C_UnwrapKey template of a restored CA private key: :func:`ec_private_key` with ``backup``,
    as a session object, to be copied into the token with :func:`restored_key_copy`.

    SoftHSM refuses CKA_MODIFIABLE in an unwrap template (CKR_ATTRIBUTE_READ_ONLY), so the key
    is unwrapped modifiable and only its copy is not; python-pkcs11 adds CKA_ENCRYPT, CKA_VERIFY
    and CKA_WRAP to every unwrap template, which an EC private key does not have
    (CKR_ATTRIBUTE_TYPE_INVALID): ``DEFAULT`` drops them again.
    """
    return {
        **ec_private_key(label, key_id, backup=True),
        Attribute.TOKEN: False,
        Attribute.MODIFIABLE: DEFAULT,
        Attribute.ENCRYPT: DEFAULT,
        Attribute.VERIFY: DEFAULT,
        Attribute.WRAP: DEFAULT,
    }


def restored_key_copy() -> dict[Attribute, Any]:
    """C_CopyObject template making a restored key a lasting, unmodifiable token object."""
    return {Attribute.TOKEN: True, Attribute.MODIFIABLE: False}


def ec_public_key_object(
    label: str, key_id: bytes, ec_params: bytes, ec_point: bytes
) -> dict[Attribute, Any]:
    """C_CreateObject template of a CA's public key brought back from its certificate (the
    public half a restored private key pairs with)."""
    return {
        **ec_public_key(label, key_id),
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.EC,
        Attribute.EC_PARAMS: ec_params,
        Attribute.EC_POINT: ec_point,
    }
