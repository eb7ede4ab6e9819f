"""The error hierarchy (kms/errors.py): families, exit statuses, codes, messages, to_dict."""

from __future__ import annotations

import inspect
import json

import pytest

from kms import errors

#: The exit status of every KMSError class, by family (the CLI contract).
EXIT_STATUS: dict[type[errors.KMSError], int] = {
    errors.KMSError: 1,
    errors.KMSUsageError: 2,
    errors.ConfigError: 2,
    errors.InputError: 2,
    errors.NotFoundError: 2,
    errors.ConflictError: 2,
    errors.SchemaOutdatedError: 2,
    errors.NotInitialisedError: 2,
    errors.KeyStateError: 2,
    errors.InvocationCounterExhausted: 2,
    errors.CertificateProfileError: 2,
    errors.ApprovalError: 2,
    errors.CryptoError: 3,
    errors.InvalidTag: 3,
    errors.InvalidSignature: 3,
    errors.InvalidUnwrap: 3,
    errors.InvalidBinding: 3,
    errors.UnsupportedMechanism: 3,
    errors.AuthenticationFailed: 3,
    errors.InvocationCounterError: 3,
    errors.InvalidCertificatePath: 3,
    errors.HsmError: 4,
    errors.TokenNotFound: 4,
    errors.PinIncorrect: 4,
    errors.PinLocked: 4,
    errors.SessionLost: 4,
    errors.TokenKeyNotFound: 4,
    errors.DatabaseError: 5,
    errors.IntegrityError: 6,
    errors.AuditChainBroken: 6,
}

FAMILIES = {
    errors.KMSUsageError: 2,
    errors.CryptoError: 3,
    errors.HsmError: 4,
    errors.DatabaseError: 5,
    errors.IntegrityError: 6,
}

ALL_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.KMSError)
    ),
    key=lambda c: c.__name__,
)


def _make(cls: type[errors.KMSError], message: str = "something failed") -> errors.KMSError:
    if cls is errors.UnsupportedMechanism:
        return cls(message, errors.UnsupportedReason.MISSING_FROM_TOKEN)
    if cls is errors.InvocationCounterError:
        return cls(message, expected=7)
    return cls(message)


def test_every_error_class_has_a_stated_exit_status() -> None:
    assert set(ALL_CLASSES) == set(EXIT_STATUS)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_exit_status_follows_the_family(cls: type[errors.KMSError]) -> None:
    error = _make(cls)
    assert errors.exit_status_for(error) == EXIT_STATUS[cls]
    families = [family for family in FAMILIES if issubclass(cls, family)]
    assert len(families) <= 1
    if families:
        assert EXIT_STATUS[cls] == FAMILIES[families[0]]


@pytest.mark.parametrize("error", [ValueError("x"), RuntimeError("x"), KeyboardInterrupt()])
def test_anything_else_exits_with_status_1(error: BaseException) -> None:
    assert errors.exit_status_for(error) == 1


def test_codes_are_unique_and_dotted_under_their_family() -> None:
    codes = [cls.code for cls in ALL_CLASSES]
    assert len(codes) == len(set(codes))
    for cls in ALL_CLASSES:
        for family in FAMILIES:
            if issubclass(cls, family) and cls is not family:
                assert cls.code.startswith(family.code + "."), cls.__name__


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_to_dict_carries_the_code_and_message_and_is_json(cls: type[errors.KMSError]) -> None:
    error = _make(cls, "meter 4D4D4D0000BC614E: no such key")
    out = error.to_dict()
    assert out["error"] == cls.code
    assert out["message"] == "meter 4D4D4D0000BC614E: no such key"
    assert json.loads(json.dumps(out)) == out
    assert str(error) == error.message


def test_input_error_names_source_row_and_field() -> None:
    error = errors.InputError("not hexadecimal", source="meters.csv", row=17, field="initial_kek")
    assert str(error) == "meters.csv, row 17, field 'initial_kek': not hexadecimal"
    assert error.detail == "not hexadecimal"
    assert (error.source, error.row, error.field) == ("meters.csv", 17, "initial_kek")
    assert error.to_dict() == {
        "error": "usage.input",
        "message": "meters.csv, row 17, field 'initial_kek': not hexadecimal",
        "source": "meters.csv",
        "row": 17,
        "field": "initial_kek",
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "bad value"),
        ({"source": "keys.hex"}, "keys.hex: bad value"),
        ({"row": 0}, "row 0: bad value"),
        ({"field": "suite"}, "field 'suite': bad value"),
        ({"source": "m.csv", "field": "suite"}, "m.csv, field 'suite': bad value"),
    ],
)
def test_input_error_names_only_what_it_was_given(kwargs: dict[str, object], expected: str) -> None:
    error = errors.InputError("bad value", **kwargs)  # type: ignore[arg-type]
    assert str(error) == expected
    assert error.to_dict()["message"] == expected


def test_unsupported_mechanism_carries_a_public_reason() -> None:
    error = errors.UnsupportedMechanism("no AES_GMAC", errors.UnsupportedReason.MISSING_FROM_TOKEN)
    assert error.reason is errors.UnsupportedReason.MISSING_FROM_TOKEN
    assert {r.value for r in errors.UnsupportedReason} == {
        "missing_from_token",
        "missing_from_profile",
        "not_yet_implemented",
    }


def test_the_three_families_of_the_style_guide_are_disjoint() -> None:
    for crypto in (errors.InvalidTag, errors.InvalidSignature, errors.InvalidUnwrap):
        assert issubclass(crypto, errors.CryptoError)
        assert not issubclass(crypto, (errors.HsmError, errors.KMSUsageError))
    for hsm in (errors.PinIncorrect, errors.SessionLost, errors.TokenNotFound):
        assert not issubclass(hsm, (errors.CryptoError, errors.KMSUsageError))


def test_an_exception_response_shows_in_to_dict_as_hex() -> None:
    error = errors.InvocationCounterError("replayed", expected=11)
    assert "exception_response" not in error.to_dict()
    error.exception_response = bytes.fromhex("D80106 0000000B")
    assert error.to_dict()["exception_response"] == "D801060000000B"
    assert error.expected == 11
