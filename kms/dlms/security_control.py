"""The security control byte and the security header: DLMS UA 1000-2 Ed. 8.x ("Green Book") /
IEC 62056-5-3, clause 9.2 (information security: the security header of ciphered xDLMS APDUs);
see docs/dlms-security.md sections 2.1 and 2.2 (clause numbers not checked against a copy of the
standard).

The security control byte (SC) says how an APDU is protected::

    bit 7    compression (only in general-glo-, general-ded- and general-ciphering)
    bit 6    key set: 0 = unicast key (GUEK, global unicast encryption key, or dedicated key),
             1 = broadcast key (GBEK, global broadcast encryption key)
    bit 5    E: encryption applied
    bit 4    A: authentication applied
    bits 3-0 security suite id (0, 1 or 2)

The suite is read from all four low bits (Gurux reads ``sc & 0x03``, which turns 0x35 into a
suite-1 byte); the ids 3 to 15 are reserved and refused with :class:`~kms.errors.InputError`.
The security header is SC followed by the invocation counter (IC), 4 bytes big-endian.

Exports:

* :class:`SecurityControl` -- the five fields of SC, with :meth:`SecurityControl.to_byte` and
  :meth:`SecurityControl.from_byte`.
* :data:`SECURITY_HEADER_LENGTH` -- 5, and :data:`MAX_INVOCATION_COUNTER` -- 2**32 - 1.
* :func:`security_header`, :func:`parse_security_header` -- SC || IC, and
  :func:`read_security_header` for parsers that already hold an :class:`~kms.dlms.axdr.Reader`.
* :func:`check_invocation_counter` -- the builders' range check of an IC.
"""

from __future__ import annotations

from dataclasses import dataclass

from kms.dlms.axdr import Reader
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError

__all__ = [
    "MAX_INVOCATION_COUNTER",
    "SECURITY_HEADER_LENGTH",
    "SecurityControl",
    "check_invocation_counter",
    "parse_security_header",
    "read_security_header",
    "security_header",
]

SECURITY_HEADER_LENGTH = 5
MAX_INVOCATION_COUNTER = 0xFFFFFFFF

_COMPRESSION = 0x80
_KEY_SET = 0x40
_ENCRYPTION = 0x20
_AUTHENTICATION = 0x10
_SUITE_MASK = 0x0F


@dataclass(frozen=True)
class SecurityControl:
    """The security control byte (SC), fields in bit order from bit 7 down.

    ``broadcast`` is the key-set bit 6 (``True``: the GBEK). Every field is checked at
    construction: the flags must be ``bool`` and ``suite`` a :class:`SecuritySuite` (an int
    0..2 is converted); anything else is a caller bug (``TypeError`` / ``ValueError``).
    """

    compression: bool
    broadcast: bool
    encryption: bool
    authentication: bool
    suite: SecuritySuite

    def __post_init__(self) -> None:
        for name in ("compression", "broadcast", "encryption", "authentication"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be bool, not {type(value).__name__}")
        suite = self.suite
        if isinstance(suite, bool) or not isinstance(suite, int):
            raise TypeError(f"suite must be a SecuritySuite, not {type(suite).__name__}")
        try:
            object.__setattr__(self, "suite", SecuritySuite(suite))
        except ValueError:
            raise ValueError(f"suite must be 0, 1 or 2, got {suite}") from None

    def to_byte(self) -> int:
        """The SC value, 0..255."""
        return (
            (_COMPRESSION if self.compression else 0)
            | (_KEY_SET if self.broadcast else 0)
            | (_ENCRYPTION if self.encryption else 0)
            | (_AUTHENTICATION if self.authentication else 0)
            | int(self.suite)
        )

    @classmethod
    def from_byte(cls, value: int, *, field_offset: int = 0) -> SecurityControl:
        """The SC of the byte ``value`` read at ``field_offset`` of some input.

        A reserved suite id (3..15 in bits 3-0) raises :class:`~kms.errors.InputError` naming
        the field ``security_control`` and ``field_offset``. ``value`` outside 0..255 is a caller
        bug (``ValueError``): a byte read from input is always in range. The 48 valid bytes map
        to instances built once (this runs for every APDU).
        """
        if type(value) is int and 0 <= value <= 0xFF:
            cached = _BY_BYTE.get(value)
            if cached is not None:
                return cached
        return cls._from_byte(value, field_offset=field_offset)

    @classmethod
    def _from_byte(cls, value: int, *, field_offset: int = 0) -> SecurityControl:
        """:meth:`from_byte` without the table: builds and checks every field."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"security control byte must be int, not {type(value).__name__}")
        if not 0 <= value <= 0xFF:
            raise ValueError(f"security control byte must be 0..255, got {value}")
        suite = value & _SUITE_MASK
        if suite > max(SecuritySuite):
            raise InputError(
                f"reserved security suite {suite} in security control byte 0x{value:02x} "
                f"at offset {field_offset}; expected 0, 1 or 2",
                field="security_control",
            )
        return cls(
            compression=bool(value & _COMPRESSION),
            broadcast=bool(value & _KEY_SET),
            encryption=bool(value & _ENCRYPTION),
            authentication=bool(value & _AUTHENTICATION),
            suite=SecuritySuite(suite),
        )


#: The SC of every byte with a valid suite (bits 3-0 in 0..2), built once.
_BY_BYTE: dict[int, SecurityControl] = {
    byte: SecurityControl._from_byte(byte) for byte in range(0x100) if byte & _SUITE_MASK <= 2
}


def security_header(security_control: SecurityControl, invocation_counter: int) -> bytes:
    """SC || IC: the 5-byte security header.

    ``invocation_counter`` must be 0..2**32 - 1 (``ValueError`` otherwise).
    """
    if not isinstance(security_control, SecurityControl):
        raise TypeError(
            f"security_control must be SecurityControl, not {type(security_control).__name__}"
        )
    check_invocation_counter(invocation_counter)
    return bytes([security_control.to_byte()]) + invocation_counter.to_bytes(4, "big")


def parse_security_header(data: bytes) -> tuple[SecurityControl, int]:
    """``(security_control, invocation_counter)`` of exactly 5 bytes.

    Raises :class:`~kms.errors.InputError` naming the field and offset on a short input, a
    reserved suite or trailing bytes, and nothing else for any ``bytes`` input.
    """
    reader = Reader(data, source="security header")
    header = read_security_header(reader)
    reader.done()
    return header


def read_security_header(reader: Reader) -> tuple[SecurityControl, int]:
    """Read SC || IC at the reader's offset (the reader's ``source`` names the input)."""
    sc_at = reader.offset
    sc_byte = reader.u8("security_control")
    try:
        security_control = SecurityControl.from_byte(sc_byte, field_offset=sc_at)
    except InputError as error:
        raise reader.error(
            f"reserved security suite {sc_byte & _SUITE_MASK} in security control byte "
            f"0x{sc_byte:02x}; expected 0, 1 or 2",
            "security_control",
            sc_at,
        ) from error
    invocation_counter = int.from_bytes(reader.take(4, "invocation_counter"), "big")
    return security_control, invocation_counter


def check_invocation_counter(invocation_counter: int) -> None:
    """``TypeError`` / ``ValueError`` unless ``invocation_counter`` is an int 0..2**32 - 1."""
    if isinstance(invocation_counter, bool) or not isinstance(invocation_counter, int):
        raise TypeError(f"invocation_counter must be int, not {type(invocation_counter).__name__}")
    if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
        raise ValueError(
            f"invocation_counter must be 0..{MAX_INVOCATION_COUNTER:#x}, got {invocation_counter}"
        )
