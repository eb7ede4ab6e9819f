"""Ciphered xDLMS APDU envelopes: DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3,
the xDLMS APDUs of clause 9 (the service-specific glo- and ded- ciphered APDUs,
general-glo-ciphering and general-ded-ciphering); see docs/dlms-security.md sections 2.4 and 2.5
(clause numbers not checked against a copy of the standard).

The envelopes, with A-XDR lengths (:mod:`kms.dlms.axdr`)::

    service-specific:  tag | len | SC | IC(4) | payload
    DB / DC:           tag | len(system-title) | system-title(0 or 8) | len | SC | IC(4) | payload

``len`` counts the security header (SC, the security control byte, and IC, the invocation
counter) and the payload. The payload is what follows the security header -- ciphertext || tag,
APDU || tag or ciphertext, depending on SC -- and is carried without being interpreted: this
module holds no keys and does no cryptography.

Tags: for the new services glo = plain + 0x08 and ded = plain + 0x10; for the old ones
glo = plain + 0x20 and ded = plain + 0x40 (:data:`SERVICE_TAGS`, sixteen services). A
service-specific APDU never sets the compression bit of SC (notes section 2.1): building one is a
``ValueError``, parsing one an :class:`~kms.errors.InputError`. A general-glo/ded system title is
8 bytes or empty (some meters send ``DB 00``, notes section 2.5).

Parsers are strict: an unknown tag, a length that disagrees with the bytes that follow (which
covers truncated and trailing input), a non-minimal A-XDR length, a reserved suite, a system title
that is neither 0 nor 8 bytes raise :class:`~kms.errors.InputError` naming the field and the
offset, and nothing else is raised for any ``bytes`` input.

Exports: :data:`SERVICE_TAGS`, :data:`GENERAL_GLO_CIPHERING`, :data:`GENERAL_DED_CIPHERING`,
:class:`CipheredApdu`, :func:`encode_ciphered_apdu`, :func:`parse_ciphered_apdu`,
:func:`glo_tag_for`, :func:`ded_tag_for`, :func:`plain_tag_for`, :class:`GeneralCiphering`,
:func:`encode_general_ciphering`, :func:`parse_general_ciphering`, and
:func:`frame_ciphered_apdu` (the head-end's hot path: the same bytes, fields checked by the
caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from kms.dlms.axdr import Reader, encode_length
from kms.dlms.security_control import (
    SECURITY_HEADER_LENGTH,
    SecurityControl,
    check_invocation_counter,
    read_security_header,
    security_header,
)
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH

__all__ = [
    "GENERAL_DED_CIPHERING",
    "GENERAL_GLO_CIPHERING",
    "SERVICE_TAGS",
    "CipheredApdu",
    "GeneralCiphering",
    "ded_tag_for",
    "encode_ciphered_apdu",
    "encode_general_ciphering",
    "frame_ciphered_apdu",
    "glo_tag_for",
    "parse_ciphered_apdu",
    "parse_general_ciphering",
    "plain_tag_for",
]

GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC

#: plain tag -> (glo tag, ded tag), notes section 2.4.
SERVICE_TAGS: Mapping[int, tuple[int, int]] = MappingProxyType(
    {
        0xC0: (0xC8, 0xD0),  # get-request
        0xC1: (0xC9, 0xD1),  # set-request
        0xC2: (0xCA, 0xD2),  # event-notification-request
        0xC3: (0xCB, 0xD3),  # action-request
        0xC4: (0xCC, 0xD4),  # get-response
        0xC5: (0xCD, 0xD5),  # set-response
        0xC7: (0xCF, 0xD7),  # action-response
        0x01: (0x21, 0x41),  # initiateRequest
        0x05: (0x25, 0x45),  # readRequest
        0x06: (0x26, 0x46),  # writeRequest
        0x08: (0x28, 0x48),  # initiateResponse
        0x0C: (0x2C, 0x4C),  # readResponse
        0x0D: (0x2D, 0x4D),  # writeResponse
        0x0E: (0x2E, 0x4E),  # confirmedServiceError
        0x16: (0x36, 0x56),  # unconfirmedWriteRequest
        0x18: (0x38, 0x58),  # informationReportRequest
    }
)

_PLAIN_FOR: Mapping[int, tuple[int, Literal["glo", "ded"]]] = MappingProxyType(
    {glo: (plain, "glo") for plain, (glo, _) in SERVICE_TAGS.items()}
    | {ded: (plain, "ded") for plain, (_, ded) in SERVICE_TAGS.items()}
)


def glo_tag_for(plain_tag: int) -> int:
    """The glo- tag of the plain service tag ``plain_tag`` (``ValueError`` if it has none)."""
    return _service(plain_tag)[0]


def ded_tag_for(plain_tag: int) -> int:
    """The ded- tag of the plain service tag ``plain_tag`` (``ValueError`` if it has none)."""
    return _service(plain_tag)[1]


def plain_tag_for(ciphered_tag: int) -> tuple[int, Literal["glo", "ded"]]:
    """``(plain tag, "glo" or "ded")`` of a service-specific ciphered tag.

    ``ValueError`` for any other tag (:func:`parse_ciphered_apdu` checks tags from input).
    """
    _check_tag_int(ciphered_tag, "ciphered_tag")
    try:
        return _PLAIN_FOR[ciphered_tag]
    except KeyError:
        raise ValueError(f"0x{ciphered_tag:02x} is not a glo- or ded- ciphered tag") from None


@dataclass(frozen=True)
class CipheredApdu:
    """A service-specific glo- or ded- ciphered APDU (for example glo-get-request, 0xC8).

    ``payload`` is everything after the security header, uninterpreted. Building one with an
    unknown tag, the compression bit set, an IC outside 0..2**32 - 1 or a non-bytes payload is a
    caller bug (``ValueError`` / ``TypeError``).
    """

    tag: int
    security_control: SecurityControl
    invocation_counter: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        plain_tag_for(self.tag)
        _check_security_control(self.security_control)
        if self.security_control.compression:
            raise ValueError(
                "the compression bit is allowed only in general-glo/ded/general-ciphering, "
                f"not in a service-specific APDU (tag 0x{self.tag:02x})"
            )
        check_invocation_counter(self.invocation_counter)
        object.__setattr__(self, "payload", _bytes(self.payload, "payload"))

    def to_bytes(self) -> bytes:
        """tag | len | SC | IC | payload."""
        return bytes([self.tag]) + _content(
            self.security_control, self.invocation_counter, self.payload
        )


@dataclass(frozen=True)
class GeneralCiphering:
    """A general-glo-ciphering (0xDB) or general-ded-ciphering (0xDC) APDU.

    ``system_title`` is the originator's 8-byte system title, or empty. General-ciphering (0xDD),
    with its transaction id and key information, has another layout and is not this class.
    """

    tag: int
    system_title: bytes
    security_control: SecurityControl
    invocation_counter: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_tag_int(self.tag, "tag")
        if self.tag not in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
            raise ValueError(f"tag must be 0xdb or 0xdc, got 0x{self.tag:02x}")
        system_title = _bytes(self.system_title, "system_title")
        if len(system_title) not in (0, SYSTEM_TITLE_LENGTH):
            raise ValueError(f"system_title must be 0 or 8 bytes, got {len(system_title)}")
        object.__setattr__(self, "system_title", system_title)
        _check_security_control(self.security_control)
        check_invocation_counter(self.invocation_counter)
        object.__setattr__(self, "payload", _bytes(self.payload, "payload"))

    def to_bytes(self) -> bytes:
        """tag | len(system-title) | system-title | len | SC | IC | payload."""
        return (
            bytes([self.tag, len(self.system_title)])
            + self.system_title
            + _content(self.security_control, self.invocation_counter, self.payload)
        )


def encode_ciphered_apdu(
    tag: int, security_control: SecurityControl, invocation_counter: int, payload: bytes
) -> bytes:
    """The bytes of a :class:`CipheredApdu` with these fields."""
    return CipheredApdu(tag, security_control, invocation_counter, payload).to_bytes()


def encode_general_ciphering(
    tag: int,
    system_title: bytes,
    security_control: SecurityControl,
    invocation_counter: int,
    payload: bytes,
) -> bytes:
    """The bytes of a :class:`GeneralCiphering` APDU with these fields."""
    return GeneralCiphering(
        tag, system_title, security_control, invocation_counter, payload
    ).to_bytes()


def frame_ciphered_apdu(
    tag: int,
    system_title: bytes | None,
    security_control: int,
    invocation_counter: int,
    payload: bytes,
) -> bytes:
    """The bytes of a ciphered APDU whose fields the caller has already checked (the hot path).

    ``system_title`` is ``None`` for a service-specific APDU, else the 0- or 8-byte title of
    general-glo/ded-ciphering. Equal to :meth:`CipheredApdu.to_bytes` /
    :meth:`GeneralCiphering.to_bytes` of the same fields, without building and re-checking them
    (the tests hold the two to the same bytes).
    """
    length = 5 + len(payload)
    head = bytes([tag]) if system_title is None else bytes([tag, len(system_title)]) + system_title
    return (
        head
        + (bytes([length]) if length < 0x80 else encode_length(length))
        + bytes([security_control])
        + invocation_counter.to_bytes(4, "big")
        + payload
    )


def parse_ciphered_apdu(data: bytes) -> CipheredApdu:
    """Parse a service-specific glo- or ded- ciphered APDU strictly (module docstring)."""
    reader = Reader(data, source="ciphered APDU")
    tag_at = reader.offset
    tag = reader.u8("tag")
    if tag not in _PLAIN_FOR:
        raise reader.error(f"0x{tag:02x} is not a glo- or ded- ciphered tag", "tag", tag_at)
    security_control, invocation_counter, payload, sc_at = _read_content(reader)
    if security_control.compression:
        raise reader.error(
            "compression bit set in a service-specific APDU (allowed only in general-glo/ded/"
            "general-ciphering)",
            "security_control",
            sc_at,
        )
    return CipheredApdu(tag, security_control, invocation_counter, payload)


def parse_general_ciphering(data: bytes) -> GeneralCiphering:
    """Parse a general-glo-ciphering or general-ded-ciphering APDU strictly (module docstring)."""
    reader = Reader(data, source="general-glo/ded-ciphering APDU")
    tag_at = reader.offset
    tag = reader.u8("tag")
    if tag not in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        raise reader.error(
            f"expected 0xdb (general-glo-ciphering) or 0xdc (general-ded-ciphering), "
            f"got 0x{tag:02x}",
            "tag",
            tag_at,
        )
    st_at = reader.offset
    st_length = reader.length("system_title")
    if st_length not in (0, SYSTEM_TITLE_LENGTH):
        raise reader.error(
            f"system-title length must be 0 or 8, got {st_length}", "system_title", st_at
        )
    system_title = reader.take(st_length, "system_title")
    security_control, invocation_counter, payload, _ = _read_content(reader)
    return GeneralCiphering(tag, system_title, security_control, invocation_counter, payload)


# --- shared ----------------------------------------------------------------------------------


def _content(security_control: SecurityControl, invocation_counter: int, payload: bytes) -> bytes:
    body = security_header(security_control, invocation_counter) + payload
    return encode_length(len(body)) + body


def _read_content(reader: Reader) -> tuple[SecurityControl, int, bytes, int]:
    """len | SC | IC | payload, where len must be exactly the bytes left; also SC's offset."""
    length_at = reader.offset
    length = reader.length("length")
    if length != reader.remaining:
        raise reader.error(
            f"length {length} disagrees with the {reader.remaining} byte(s) that follow",
            "length",
            length_at,
        )
    if length < SECURITY_HEADER_LENGTH:
        raise reader.error(
            f"length {length} is too short for the 5-byte security header", "length", length_at
        )
    sc_at = reader.offset
    security_control, invocation_counter = read_security_header(reader)
    payload = reader.take(reader.remaining, "payload")
    reader.done()
    return security_control, invocation_counter, payload, sc_at


def _service(plain_tag: int) -> tuple[int, int]:
    _check_tag_int(plain_tag, "plain_tag")
    try:
        return SERVICE_TAGS[plain_tag]
    except KeyError:
        raise ValueError(f"0x{plain_tag:02x} has no glo- or ded- ciphered form") from None


def _check_tag_int(tag: int, name: str) -> None:
    if isinstance(tag, bool) or not isinstance(tag, int):
        raise TypeError(f"{name} must be int, not {type(tag).__name__}")
    if not 0 <= tag <= 0xFF:
        raise ValueError(f"{name} must be 0..255, got {tag}")


def _check_security_control(security_control: SecurityControl) -> None:
    if not isinstance(security_control, SecurityControl):
        raise TypeError(
            f"security_control must be SecurityControl, not {type(security_control).__name__}"
        )


def _bytes(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)
