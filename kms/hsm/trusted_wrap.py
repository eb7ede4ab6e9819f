"""CA key backup in the token: PKCS#11 v2.40 ``CKA_TRUSTED`` and ``CKA_WRAP_WITH_TRUSTED``
(section 4.9 of the base specification), a CA's EC private key wrapped as PKCS#8 (RFC 5208) with
RFC 5649 (``CKM_AES_KEY_WRAP_PAD``, the profile's ``ca_key_wrap`` job).

A CA private key is extractable only under a key whose ``CKA_TRUSTED`` is true, and only the
security officer (SO) may set that attribute. What SoftHSM 2.6.1 does decides the shape (measured
through python-pkcs11 0.10.1):

* The SO can make public objects only: a private one is ``CKR_USER_NOT_LOGGED_IN``. The user
  cannot set ``CKA_TRUSTED`` (``CKR_ATTRIBUTE_READ_ONLY``), neither when making a key nor by
  copying one.
* A public *token* object keeps its ``CKA_VALUE`` in clear in the token file; a session object
  never reaches the disk. So the SO makes the key as a public, modifiable session object and the
  user copies it (``C_CopyObject``) into a private, unmodifiable token object. The copy keeps
  ``CKA_TRUSTED``; its value is then stored encrypted under the token's user PIN key. A search of
  the token directory for the key's bytes finds nothing (tests/hsm/test_trusted_wrap.py).
* Login is per application and one user type at a time: the SO cannot log in while this process
  is logged in as the user (``CKR_USER_ANOTHER_ALREADY_LOGGED_IN``), though another process may
  be. So :func:`create_trusted_wrapping_key` logs the adapter out, opens an SO session, logs the
  SO out and the user in again, all under the process lock; the key the SO made waits in a public
  session that outlives both logins. Every session key of the adapter dies on the way (a
  ceremony holds none). An adapter that only shares the login another
  :class:`~kms.hsm.adapter.Hsm` of the process holds cannot log it out, so there the SO login
  fails, with an error saying so: run the ceremony in a process of its own (the scripts do).
* ``C_WrapKey`` of a ``CKA_WRAP_WITH_TRUSTED`` key under any key that is not trusted answers
  ``CKR_KEY_NOT_WRAPPABLE``. An EC private key wraps with ``CKM_AES_KEY_WRAP_PAD`` as PKCS#8
  (``ECPrivateKey`` without the public key), which SoftHSM zero-pads to a multiple of 8 *before*
  RFC 5649, so a standard unwrap (pyca's) gives the PKCS#8 DER followed by up to 7 zero bytes.
  SoftHSM's own unwrap accepts that, and standard RFC 5649 blobs of PKCS#8 too.
* ``C_UnwrapKey`` refuses ``CKA_MODIFIABLE`` in its template, so a restored key is unwrapped as a
  session object and copied into an unmodifiable token object (the session object is
  destroyed, and would die with the session after a crash). A blob under another key, or a
  corrupted one, answers ``CKR_GENERAL_ERROR``: :class:`~kms.errors.InvalidUnwrap` here.

Exports: :func:`create_trusted_wrapping_key`, :func:`wrap_private_key`,
:func:`load_unwrapping_key`, :func:`unwrap_private_key`, :func:`create_public_key`, which
:class:`kms.hsm.Hsm` offers as methods.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from kms import errors
from kms.config import Pin
from kms.hsm import templates
from kms.hsm._errors import translate, translated
from kms.hsm._token_access import TokenAccess
from kms.hsm.session import SessionKey, TokenKey
from kms.hsm.templates import KeyUse

__all__ = [
    "WRAP_JOB",
    "create_public_key",
    "create_trusted_wrapping_key",
    "load_unwrapping_key",
    "unwrap_private_key",
    "wrap_private_key",
]

#: The profile job naming the mechanism a CA private key is wrapped with.
WRAP_JOB = "ca_key_wrap"
#: Length of the backup wrapping key (AES-256).
KEY_LENGTH = 32
#: Named curves of CA keys, as pyca and python-pkcs11 both name them.
_CURVES = frozenset({"secp256r1", "secp384r1"})
#: Answers of C_UnwrapKey to a blob that fails RFC 5649's integrity check (SoftHSM: the bare
#: CKR_GENERAL_ERROR) or is not a PKCS#8 key of the type asked for.
_UNWRAP_FAILED = (
    p11e.GeneralError,
    p11e.WrappedKeyInvalid,
    p11e.WrappedKeyLenRange,
    p11e.EncryptedDataInvalid,
    p11e.EncryptedDataLenRange,
    p11e.TemplateInconsistent,
)


def _so_session(hsm: TokenAccess, so_pin: Pin) -> Any:
    """A read-write session logged in as the SO, retrying a login collision with another
    process as the user login does (each C_Login rewrites the token file)."""
    operation = f"login to token {hsm.token_label!r} as security officer"
    delay = 0.02
    for attempt in range(hsm.profile.login_retries + 1):
        try:
            return hsm.open_session(so_pin=so_pin.reveal())
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
            raise errors.PinIncorrect(f"{operation}: the token refused the SO PIN") from None
        except p11e.PinLocked:
            raise errors.PinLocked(f"{operation}: the token has locked the SO PIN") from None
        except (p11e.AnotherUserAlreadyLoggedIn, p11e.UserAlreadyLoggedIn):
            raise errors.HsmError(
                f"{operation}: another KMS session of this process is logged in as the user; "
                "run the ceremony in a process of its own"
            ) from None
        except (p11e.GeneralError, p11e.DeviceError, p11e.FunctionFailed):
            if attempt == hsm.profile.login_retries:
                break
            time.sleep(delay)
            delay *= 2
        except p11e.PKCS11Error as exc:
            raise translate(exc, operation) from None
    raise errors.HsmError(
        f"{operation} kept failing after {hsm.profile.login_retries + 1} attempts"
    )


def create_trusted_wrapping_key(
    hsm: TokenAccess, so_pin: Pin, label: str, key_id: bytes, value: bytearray
) -> TokenKey:
    """The AES-256 backup wrapping key of known ``value`` as a private, unmodifiable token
    object with ``CKA_TRUSTED``, ``CKA_WRAP`` only, sensitive and never extractable.

    The SO makes it, the user keeps it (see the module docstring). The adapter is logged in as
    the user again when this returns or raises; the caller zeroises ``value``.
    """
    if len(value) != KEY_LENGTH:
        raise ValueError("the backup wrapping key is an AES-256 key (32 bytes)")
    template = templates.trusted_wrapping_key_by_so(label, key_id)
    template[Attribute.VALUE] = bytes(value)
    with hsm.locked():
        hsm.call("check the session", lambda: None)  # reopens first if the module re-initialised
        with translated("open a session for the security officer"):
            holder = hsm.open_session()  # public: it outlives both logins
        made: Any = None
        try:
            hsm.close()  # logs this process out: the SO cannot log in beside the user
            try:
                officer = _so_session(hsm, so_pin)
                try:
                    with translated("create the trusted wrapping key as security officer"):
                        made = holder.create_object(template)
                finally:
                    with contextlib.suppress(p11e.PKCS11Error):
                        officer.close()  # logs the SO out
            finally:
                hsm.reopen()  # the user's login again, whatever happened
            with translated("keep the trusted wrapping key as a private token object"):
                made.copy(templates.trusted_wrapping_key_copy())
        finally:
            if made is not None:
                with contextlib.suppress(p11e.PKCS11Error):
                    made.destroy()
            with contextlib.suppress(p11e.PKCS11Error):
                holder.close()
    return TokenKey(label)


def wrap_private_key(hsm: TokenAccess, wrapping_key: TokenKey, key: TokenKey) -> bytes:
    """``key`` (a private key) wrapped under ``wrapping_key`` in the token: PKCS#8 under the
    profile's ``ca_key_wrap`` mechanism. A key the token will not let out under that key (not
    extractable, or ``CKA_WRAP_WITH_TRUSTED`` under a key that is not trusted) is an
    :class:`~kms.errors.HsmError` saying so."""
    mech = hsm.profile.optional_mechanism(WRAP_JOB)

    def wrap() -> bytes:
        try:
            return bytes(hsm.resolve(wrapping_key).wrap_key(hsm.resolve(key), mechanism=mech))
        except (p11e.KeyNotWrappable, p11e.KeyUnextractable) as exc:
            raise errors.HsmError(
                f"wrap {key.label} under {wrapping_key.label}: the token refuses "
                f"({type(exc).__name__}): the key is not extractable, or it may leave only "
                "under a CKA_TRUSTED key and this one is not"
            ) from None

    return hsm.call("wrap CA key", wrap)


def load_unwrapping_key(hsm: TokenAccess, value: bytearray) -> SessionKey:
    """The backup wrapping key rebuilt from its value as a session key that can only unwrap;
    the caller zeroises ``value`` and destroys the key when the restore is done."""
    if len(value) != KEY_LENGTH:
        raise ValueError("the backup wrapping key is an AES-256 key (32 bytes)")
    template = templates.backup_unwrapping_key()
    template[Attribute.VALUE] = bytes(value)
    obj = hsm.call(
        "rebuild backup wrapping key", lambda: hsm.pkcs11_session.create_object(template)
    )
    # KEK_FOR_USE: a session key that unwraps and never leaves the token again.
    return hsm.session_key(obj, KEY_LENGTH, KeyUse.KEK_FOR_USE)


def unwrap_private_key(
    hsm: TokenAccess, unwrapping_key: SessionKey, wrapped: bytes, label: str, key_id: bytes
) -> TokenKey:
    """Unwrap a backed-up CA private key into a token object labelled ``label``, with the
    template of a CA key (sensitive, extractable only under a trusted key, sign only).

    A blob that fails its integrity check (another key, corrupted) raises
    :class:`~kms.errors.InvalidUnwrap` and leaves nothing in the token.
    """
    mech = hsm.profile.optional_mechanism(WRAP_JOB)
    template = templates.restored_ec_private_key(label, key_id)

    def unwrap() -> None:
        try:
            restored = hsm.resolve(unwrapping_key).unwrap_key(
                ObjectClass.PRIVATE_KEY,
                KeyType.EC,
                bytes(wrapped),
                mechanism=mech,
                capabilities=MechanismFlag(0),
                template=template,
            )
        except _UNWRAP_FAILED:
            raise errors.InvalidUnwrap("unwrap CA key: integrity check failed") from None
        try:
            restored.copy(templates.restored_key_copy())
        finally:
            restored.destroy()

    hsm.call("restore CA key", unwrap)
    return TokenKey(label, "private")


def create_public_key(
    hsm: TokenAccess, label: str, key_id: bytes, public_key_der: bytes
) -> TokenKey:
    """The public half of a restored key pair as a token object, from the DER
    SubjectPublicKeyInfo of the CA's certificate (P-256 or P-384)."""
    try:
        public = serialization.load_der_public_key(public_key_der)
    except ValueError:
        raise errors.InputError("not a DER SubjectPublicKeyInfo", field="public_key") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name not in _CURVES:
        raise errors.InputError("a CA key is EC P-256 or P-384", field="public_key")
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    # CKA_EC_POINT is the DER OCTET STRING around 04 || x || y; both lengths are below 128.
    ec_point = bytes((0x04, len(point))) + point
    ec_params = bytes(encode_named_curve_parameters(public.curve.name))
    template = templates.ec_public_key_object(label, key_id, ec_params, ec_point)
    hsm.call("create CA public key", lambda: hsm.pkcs11_session.create_object(template))
    return TokenKey(label, "public")
