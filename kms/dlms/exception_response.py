"""The exception-response APDU (tag 0xD8): DLMS UA 1000-2 Ed. 8.x ("Green Book") /
IEC 62056-5-3, the xDLMS APDUs of clause 9 (EXCEPTION-Response); see docs/dlms-security.md
sections 7 and 10 (clause numbers not checked against a copy of the standard).

A server answers with an exception-response when it cannot even start to process a request, for
example because the request does not decipher or its invocation counter (IC) is too low. The
A-XDR wire form::

    D8 | state-error (ENUMERATED, 1 byte) | service-error (CHOICE tag, 1 byte) | [IC (4 bytes)]

Every service-error alternative is an IMPLICIT NULL (no bytes) except invocation-counter-error,
which carries an Unsigned32, big-endian: the IC the server expects, in the notes' reading
(section 7: ``D8 01 06 <expected IC>``; the byte form was derived from the ASN.1 and not
captured from a device [U, notes section 10]). gurux-dlms reads these four bytes the same way
(and skips them when fewer are left); dlms-cosem's parser reads them too, but its ``to_bytes``
writes the IC as one byte, so its bytes are no reference.

The parser is strict: a wrong tag, an unknown state-error or service-error, a missing or short
IC, and trailing bytes raise :class:`~kms.errors.InputError` naming the field and the offset, and
nothing else is raised for any ``bytes`` input.

Exports: :data:`EXCEPTION_RESPONSE`, :class:`StateError`, :class:`ServiceError`,
:class:`ExceptionResponse`, :func:`parse_exception_response`, :func:`deciphering_error`,
:func:`invocation_counter_error`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kms.dlms.axdr import Reader, enum_member
from kms.dlms.security_control import check_invocation_counter

__all__ = [
    "EXCEPTION_RESPONSE",
    "ExceptionResponse",
    "ServiceError",
    "StateError",
    "deciphering_error",
    "invocation_counter_error",
    "parse_exception_response",
]

EXCEPTION_RESPONSE = 0xD8


class StateError(enum.IntEnum):
    """state-error: why the service could not run in the server's current state."""

    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ServiceError(enum.IntEnum):
    """service-error: the CHOICE tag of what went wrong."""

    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6


@dataclass(frozen=True)
class ExceptionResponse:
    """An exception-response (0xD8), fields in wire order.

    ``invocation_counter`` is required (0..2**32 - 1) when ``service_error`` is
    ``INVOCATION_COUNTER_ERROR`` and must be ``None`` otherwise; breaking that, or passing an
    unknown enum value, is a caller bug (``ValueError`` / ``TypeError``).
    """

    state_error: StateError
    service_error: ServiceError
    invocation_counter: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "state_error", enum_member(StateError, self.state_error, "state_error")
        )
        object.__setattr__(
            self, "service_error", enum_member(ServiceError, self.service_error, "service_error")
        )
        if self.service_error == ServiceError.INVOCATION_COUNTER_ERROR:
            if self.invocation_counter is None:
                raise ValueError("invocation-counter-error needs the invocation_counter")
            check_invocation_counter(self.invocation_counter)
        elif self.invocation_counter is not None:
            raise ValueError(
                f"invocation_counter is carried only by invocation-counter-error, "
                f"not by {self.service_error.name}"
            )

    def to_bytes(self) -> bytes:
        """D8 | state-error | service-error | [IC, 4 bytes big-endian]."""
        head = bytes([EXCEPTION_RESPONSE, self.state_error, self.service_error])
        if self.invocation_counter is None:
            return head
        return head + self.invocation_counter.to_bytes(4, "big")


def deciphering_error() -> ExceptionResponse:
    """service-not-allowed, deciphering-error: ``D8 01 05``."""
    return ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, ServiceError.DECIPHERING_ERROR)


def invocation_counter_error(expected_invocation_counter: int) -> ExceptionResponse:
    """service-not-allowed, invocation-counter-error: ``D8 01 06`` and the expected IC."""
    return ExceptionResponse(
        StateError.SERVICE_NOT_ALLOWED,
        ServiceError.INVOCATION_COUNTER_ERROR,
        expected_invocation_counter,
    )


def parse_exception_response(data: bytes) -> ExceptionResponse:
    """Parse an exception-response strictly (module docstring)."""
    reader = Reader(data, source="exception-response APDU")
    reader.expect_byte(EXCEPTION_RESPONSE, "tag", "exception-response")
    state_error = reader.enumerated(StateError, "state_error")
    service_error = reader.enumerated(ServiceError, "service_error")
    invocation_counter = None
    if service_error == ServiceError.INVOCATION_COUNTER_ERROR:
        invocation_counter = int.from_bytes(reader.take(4, "invocation_counter"), "big")
    reader.done()
    return ExceptionResponse(state_error, service_error, invocation_counter)
