"""What every APDU handler of the head-end shares: the forms a caller may ask for, the result it
gets back, the interface of the service, and the checks of a security control byte against the
meter's suite.

Kept apart from the handlers so that each handler (:mod:`kms.services.hes.glo_ciphering`,
:mod:`kms.services.hes.agreed_ciphering`) imports only this, never another handler; the
dispatcher (:mod:`kms.services.hes.protection`) is the one place that knows them all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from kms.dlms.security_control import SecurityControl
from kms.dlms.system_title import format_system_title
from kms.errors import InputError, UnsupportedMechanism, UnsupportedReason
from kms.services.hes.key_refs import SetupKeys

__all__ = [
    "ApduProtection",
    "ApduResult",
    "Form",
    "check_security_control",
    "check_suite",
]


class Form(enum.Enum):
    """The ciphered APDU form the head-end asks for."""

    GLO = "glo"
    DED = "ded"
    GENERAL_GLO = "general-glo"
    GENERAL_DED = "general-ded"
    #: general-ciphering (0xDD) under a key agreed for the APDU (kms.services.hes.agreed_ciphering)
    GENERAL_AGREED_1E1S = "general-agreed-1e1s"
    GENERAL_AGREED_0E2S = "general-agreed-0e2s"


@dataclass(frozen=True)
class ApduResult:
    """An APDU with the system title of its originator and its invocation counter."""

    apdu: bytes
    system_title: bytes
    invocation_counter: int
    #: Whether a tag vouched for it (verify): an encryption-only APDU is not authenticated.
    authenticated: bool = True

    def to_json(self) -> dict[str, Any]:
        """``{"apdu": HEX, "system_title": HEX, "ic": n}`` (the CLI's ``--json``), and
        ``"authenticated": false`` for an encryption-only APDU accepted on request."""
        out: dict[str, Any] = {
            "apdu": self.apdu.hex().upper(),
            "system_title": format_system_title(self.system_title),
            "ic": self.invocation_counter,
        }
        if not self.authenticated:
            out["authenticated"] = False
        return out


class ApduProtection(Protocol):
    """Protection of the APDUs between the head-end and its meters."""

    def protect(
        self,
        system_title: bytes,
        apdu: bytes,
        security_control: int,
        *,
        setup: int = 0,
        form: Form = Form.GLO,
        association: str | None = None,
        actor: str,
    ) -> ApduResult:
        """Cipher ``apdu`` for the meter ``system_title``; returns the ciphered APDU with the
        head-end's system title and the IC used. The ded forms need the ``association`` whose
        dedicated key they use. What it audits (a block of ICs, a key unwrapped, an agreement)
        names ``actor``, the caller. Raises the errors of the module docstring."""
        ...

    def verify(
        self,
        system_title: bytes,
        apdu: bytes,
        *,
        setup: int = 0,
        association: str | None = None,
        allow_unauthenticated: bool = False,
        actor: str,
    ) -> ApduResult:
        """Check and decipher an APDU from the meter ``system_title``; returns the plain APDU
        with the meter's system title and its IC, after the receive floor moved past it. A
        ded- or general-ded-ciphered APDU needs its ``association``. An encryption-only APDU
        (no tag) is refused unless ``allow_unauthenticated`` (module docstring). What it audits
        names ``actor``."""
        ...

    def close(self) -> None:
        """Destroy every key this service unwrapped."""
        ...


def check_security_control(value: int) -> SecurityControl:
    """The SC of a request to protect, or the error naming what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise InputError(f"security control must be one byte, got {value!r}", field="sc")
    sc = SecurityControl.from_byte(value)
    if sc.compression:
        raise UnsupportedMechanism(
            f"security control 0x{value:02x} asks for V.44 compression, which this KMS does not "
            "implement",
            UnsupportedReason.NOT_YET_IMPLEMENTED,
        )
    if not (sc.authentication or sc.encryption):
        raise InputError(
            f"security control 0x{value:02x} asks for neither authentication nor encryption",
            field="sc",
        )
    return sc


def check_suite(keys: SetupKeys, sc: SecurityControl) -> None:
    """:class:`~kms.errors.InputError` unless ``sc`` names the suite the meter uses."""
    if sc.suite is not keys.suite:
        raise InputError(
            f"security control 0x{sc.to_byte():02x} names suite {int(sc.suite)}, but meter "
            f"{format_system_title(keys.system_title)} uses suite {int(keys.suite)}",
            field="security_control",
        )
