"""The translation table (kms/hsm/_errors.py): no pkcs11 exception escapes untranslated.

Every ``PKCS11Error`` subclass python-pkcs11 defines is either named in ``ERROR_TABLE`` or falls
through to exactly ``HsmError``; either way the result is a ``KMSError`` whose message carries the
operation and the token's error name, never the exception's arguments (python-pkcs11 messages can
echo them).
"""

from __future__ import annotations

import pkcs11.exceptions as p11e
import pytest

from kms import errors
from kms.hsm._errors import ERROR_TABLE, translate, translated

ARGUMENT_TEXT = "argument-text-3c1d"


def _subclasses(cls: type[p11e.PKCS11Error]) -> list[type[p11e.PKCS11Error]]:
    found: list[type[p11e.PKCS11Error]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


PKCS11_ERRORS: list[type[p11e.PKCS11Error]] = sorted(
    {p11e.PKCS11Error, *_subclasses(p11e.PKCS11Error)}, key=lambda c: c.__name__
)


def test_python_pkcs11_defines_the_errors_this_table_was_written_against() -> None:
    assert len(PKCS11_ERRORS) > 60
    assert set(ERROR_TABLE) <= set(PKCS11_ERRORS)


@pytest.mark.parametrize("cls", PKCS11_ERRORS, ids=lambda c: c.__name__)
def test_every_pkcs11_error_is_in_the_table_or_becomes_exactly_hsm_error(
    cls: type[p11e.PKCS11Error],
) -> None:
    result = translate(cls(ARGUMENT_TEXT), "wrap key")
    assert isinstance(result, errors.KMSError)
    assert not isinstance(result, p11e.PKCS11Error)
    if cls in ERROR_TABLE:
        assert type(result) is ERROR_TABLE[cls]
    else:
        assert type(result) is errors.HsmError
    assert ARGUMENT_TEXT not in str(result)
    assert ARGUMENT_TEXT not in repr(result)
    assert ARGUMENT_TEXT not in str(result.to_dict())
    assert "wrap key" in str(result)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (p11e.SignatureInvalid, errors.InvalidSignature),
        (p11e.SignatureLenRange, errors.InvalidSignature),
        (p11e.WrappedKeyInvalid, errors.InvalidUnwrap),
        (p11e.EncryptedDataInvalid, errors.InvalidUnwrap),
        (p11e.PinIncorrect, errors.PinIncorrect),
        (p11e.SessionHandleInvalid, errors.SessionLost),
        (p11e.DeviceRemoved, errors.SessionLost),
        (p11e.TokenNotPresent, errors.SessionLost),
        (p11e.GeneralError, errors.HsmError),
    ],
    ids=lambda v: v.__name__,
)
def test_the_style_guides_named_translations(
    cls: type[p11e.PKCS11Error], expected: type[errors.KMSError]
) -> None:
    assert type(translate(cls(), "op")) is expected


def test_a_missing_mechanism_carries_the_missing_from_token_reason() -> None:
    result = translate(p11e.MechanismInvalid(ARGUMENT_TEXT), "GCM encrypt")
    assert isinstance(result, errors.UnsupportedMechanism)
    assert result.reason is errors.UnsupportedReason.MISSING_FROM_TOKEN


def test_translated_raises_the_translation_without_chaining_the_original() -> None:
    with pytest.raises(errors.KMSError) as info, translated("sign"):
        raise p11e.KeyHandleInvalid(ARGUMENT_TEXT)
    assert type(info.value) is errors.TokenKeyNotFound
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


def test_translated_lets_other_exceptions_through() -> None:
    with pytest.raises(ValueError, match="not a pkcs11 error"), translated("sign"):
        raise ValueError("not a pkcs11 error")
