"""The one place that maps python-pkcs11 exceptions onto the KMS's own hierarchy.

Mirrors python-pkcs11's ``map_rv_to_error``: a table from exception class to ``KMSError`` class,
applied by :func:`translate` to every call into the library (``TokenSession.call`` wraps each one;
:func:`translated` serves the few calls made outside it, at login). Any
``PKCS11Error`` not named in the table falls through to :class:`kms.errors.HsmError`, so nothing
above ``kms.hsm`` ever sees a ``pkcs11`` type. Messages carry the operation's name and the token's
own error name only: python-pkcs11's messages can echo arguments, so they are never passed on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pkcs11.exceptions as p11e

from kms import errors

#: Errors after which the session (or the device) is gone: the adapter reopens and may retry.
SESSION_LOST: tuple[type[p11e.PKCS11Error], ...] = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.UserNotLoggedIn,
)

ERROR_TABLE: dict[type[p11e.PKCS11Error], type[errors.KMSError]] = {
    # authenticity failures say nothing about why
    p11e.SignatureInvalid: errors.InvalidSignature,
    p11e.SignatureLenRange: errors.InvalidSignature,
    p11e.WrappedKeyInvalid: errors.InvalidUnwrap,
    p11e.WrappedKeyLenRange: errors.InvalidUnwrap,
    p11e.EncryptedDataInvalid: errors.InvalidUnwrap,
    p11e.EncryptedDataLenRange: errors.InvalidUnwrap,
    # mechanisms
    p11e.MechanismInvalid: errors.UnsupportedMechanism,
    p11e.MechanismParamInvalid: errors.UnsupportedMechanism,
    p11e.FunctionNotSupported: errors.UnsupportedMechanism,
    # login
    p11e.PinIncorrect: errors.PinIncorrect,
    p11e.PinInvalid: errors.PinIncorrect,
    p11e.PinLenRange: errors.PinIncorrect,
    p11e.PinLocked: errors.PinLocked,
    p11e.UserPinNotInitialized: errors.NotInitialisedError,
    # the token went away
    p11e.SessionHandleInvalid: errors.SessionLost,
    p11e.SessionClosed: errors.SessionLost,
    p11e.DeviceRemoved: errors.SessionLost,
    p11e.TokenNotPresent: errors.SessionLost,
    p11e.UserNotLoggedIn: errors.SessionLost,
    p11e.NoSuchToken: errors.TokenNotFound,
    p11e.TokenNotRecognised: errors.TokenNotFound,
    p11e.NoSuchKey: errors.TokenKeyNotFound,
    p11e.KeyHandleInvalid: errors.TokenKeyNotFound,
    p11e.ObjectHandleInvalid: errors.TokenKeyNotFound,
}


def translate(exc: p11e.PKCS11Error, operation: str) -> errors.KMSError:
    """The KMS error for a python-pkcs11 exception raised during ``operation``."""
    name = type(exc).__name__
    for cls in type(exc).__mro__:
        target = ERROR_TABLE.get(cls)
        if target is not None:
            break
    else:
        target = errors.HsmError
    message = f"{operation}: the token answered {name}"
    if target is errors.UnsupportedMechanism:
        return errors.UnsupportedMechanism(message, errors.UnsupportedReason.MISSING_FROM_TOKEN)
    if target is errors.PinIncorrect:
        return errors.PinIncorrect(f"{operation}: the token refused the user PIN ({name})")
    return target(message)


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run a block of python-pkcs11 calls, turning any ``PKCS11Error`` into a ``KMSError``."""
    try:
        yield
    except p11e.PKCS11Error as exc:
        raise translate(exc, operation) from None
