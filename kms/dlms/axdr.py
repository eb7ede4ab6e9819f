"""A-XDR lengths and the COSEM data types of method parameters: IEC 61334-6 (A-XDR encoding
rules), as used by DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3 for xDLMS APDUs, and the
COSEM data-type tags of DLMS UA 1000-1 ("Blue Book") / IEC 62056-6-2 (common data types); see
docs/dlms-security.md section 2.4 (clause numbers not checked against a copy of the standards).

A length (and an array or structure element count) is one byte below 0x80; above that a byte
``0x80 | n`` says that ``n`` big-endian bytes follow. Like Gurux (``setObjectCount`` /
``getObjectCount``) we write and read only ``n`` = 1, 2 or 4. Unlike Gurux we parse strictly: the
only accepted encoding of a value is the one :func:`encode_length` writes, so non-minimal forms
(``81 05``), ``0x80`` (BER's indefinite form) and ``0x83`` are refused. A strict reader gives every
value exactly one spelling, which makes ``encode(decode(b)) == b`` hold and closes the door on
parser differentials between the KMS and a meter.

Exports:

* :func:`encode_length`, :func:`decode_length` -- A-XDR lengths and counts.
* :class:`DataType` -- the COSEM data-type tags used here (array, structure, octet-string, enum).
* :func:`encode_octet_string`, :func:`encode_enum`, :func:`encode_structure`,
  :func:`encode_array` -- tagged COSEM ``Data`` values.
* :class:`Reader` -- a strict cursor over bytes that never reads past the end, rejects trailing
  bytes and raises :class:`~kms.errors.InputError` naming the field and the offset.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TypeVar

from kms.errors import InputError

__all__ = [
    "MAX_LENGTH",
    "DataType",
    "Reader",
    "decode_length",
    "encode_array",
    "encode_enum",
    "encode_length",
    "encode_octet_string",
    "encode_structure",
    "enum_choices",
    "enum_member",
]

MAX_LENGTH = 0xFFFFFFFF

_E = TypeVar("_E", bound=enum.IntEnum)

# Number of value bytes after the initial 0x80|n byte, and the smallest value that needs them.
_LONG_FORMS = {1: 0x80, 2: 0x100, 4: 0x10000}


class DataType(enum.IntEnum):
    """COSEM ``Data`` CHOICE tags (Blue Book common data types) used by security setup methods."""

    ARRAY = 0x01
    STRUCTURE = 0x02
    OCTET_STRING = 0x09
    ENUM = 0x16


def encode_length(n: int) -> bytes:
    """The A-XDR encoding of the length or count ``n`` (0 .. 2**32 - 1)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"length must be int, not {type(n).__name__}")
    if n < 0 or n > MAX_LENGTH:
        raise ValueError(f"length must be 0..{MAX_LENGTH:#x}, got {n}")
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return b"\x81" + n.to_bytes(1, "big")
    if n <= 0xFFFF:
        return b"\x82" + n.to_bytes(2, "big")
    return b"\x84" + n.to_bytes(4, "big")


def decode_length(data: bytes, offset: int) -> tuple[int, int]:
    """Decode the A-XDR length at ``data[offset:]``: ``(value, offset after it)``.

    Raises :class:`InputError` naming the offset when the bytes end early or the form is not one
    :func:`encode_length` writes. The value is not checked against the bytes left; a caller that
    then takes ``value`` bytes checks that (:meth:`Reader.take` does).
    """
    reader = Reader(data, offset)
    value = reader.length()
    return value, reader.offset


def encode_octet_string(value: bytes) -> bytes:
    """``octet-string``: tag 0x09, A-XDR length, the bytes."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"octet-string value must be bytes, not {type(value).__name__}")
    return bytes([DataType.OCTET_STRING]) + encode_length(len(value)) + bytes(value)


def encode_enum(value: int) -> bytes:
    """``enum``: tag 0x16 and one unsigned byte."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"enum value must be int, not {type(value).__name__}")
    if not 0 <= value <= 0xFF:
        raise ValueError(f"enum value must be 0..255, got {value}")
    return bytes([DataType.ENUM, value])


def encode_structure(*elements: bytes) -> bytes:
    """``structure``: tag 0x02, the element count, the already encoded elements in order."""
    return bytes([DataType.STRUCTURE]) + encode_length(len(elements)) + b"".join(elements)


def encode_array(elements: Sequence[bytes]) -> bytes:
    """``array``: tag 0x01, the element count, the already encoded elements in order."""
    return bytes([DataType.ARRAY]) + encode_length(len(elements)) + b"".join(elements)


class Reader:
    """A strict, bounds-checked cursor over ``data``.

    Every method names the field it reads so that the :class:`InputError` it raises says what was
    being read and at which offset. ``source`` (for example ``"key_transfer action-request"``)
    becomes the error's ``source``. The reader copies nothing until :meth:`take`.
    """

    __slots__ = ("_data", "_offset", "_source")

    def __init__(self, data: bytes, offset: int = 0, *, source: str | None = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be int, not {type(offset).__name__}")
        if not 0 <= offset <= len(data):
            raise ValueError(f"offset {offset} is outside 0..{len(data)}")
        self._data = bytes(data)
        self._offset = offset
        self._source = source

    @property
    def offset(self) -> int:
        """Offset of the next byte to read."""
        return self._offset

    @property
    def remaining(self) -> int:
        """Number of bytes not yet read."""
        return len(self._data) - self._offset

    def error(self, message: str, field: str, offset: int | None = None) -> InputError:
        """An :class:`InputError` for ``field`` at ``offset`` (default: the current offset)."""
        at = self._offset if offset is None else offset
        return InputError(f"{message} at offset {at}", source=self._source, field=field)

    def take(self, n: int, field: str = "bytes") -> bytes:
        """The next ``n`` bytes; :class:`InputError` if fewer are left."""
        if n < 0:
            raise ValueError(f"cannot take {n} bytes")
        if n > self.remaining:
            raise self.error(f"truncated: need {_count(n)}, {self.remaining} left", field)
        start = self._offset
        self._offset += n
        return self._data[start : self._offset]

    def u8(self, field: str = "byte") -> int:
        """The next byte as an unsigned integer."""
        return self.take(1, field)[0]

    def u16(self, field: str = "unsigned16") -> int:
        """The next 2 bytes as a big-endian unsigned integer."""
        return int.from_bytes(self.take(2, field), "big")

    def length(self, field: str = "length") -> int:
        """An A-XDR length or count, in the one form :func:`encode_length` writes."""
        start = self._offset
        first = self.u8(field)
        if first < 0x80:
            return first
        size = first & 0x7F
        if size not in _LONG_FORMS:
            raise self.error(f"bad A-XDR length form 0x{first:02x}", field, start)
        value = int.from_bytes(self.take(size, field), "big")
        if value < _LONG_FORMS[size]:
            raise self.error(
                f"non-minimal A-XDR length encoding 0x{first:02x} for {value}", field, start
            )
        return value

    def expect_tag(self, tag: int, field: str) -> None:
        """Consume one byte that must equal ``tag``."""
        start = self._offset
        found = self.u8(field)
        if found != tag:
            raise self.error(
                f"expected tag 0x{tag:02x}{_tag_name(tag)}, got 0x{found:02x}", field, start
            )

    def expect_byte(self, value: int, field: str, what: str) -> None:
        """Consume one byte that must equal ``value``; ``what`` says what it should mean."""
        start = self._offset
        found = self.u8(field)
        if found != value:
            raise self.error(f"expected 0x{value:02x} ({what}), got 0x{found:02x}", field, start)

    def octet_string(self, field: str) -> bytes:
        """A tagged ``octet-string``: 0x09, length, bytes."""
        self.expect_tag(DataType.OCTET_STRING, field)
        return self.take(self.length(field), field)

    def enum(self, field: str) -> int:
        """A tagged ``enum``: 0x16 and one byte."""
        self.expect_tag(DataType.ENUM, field)
        return self.u8(field)

    def enumerated(self, enum_type: type[_E], field: str) -> _E:
        """One byte that must be a member of the ``IntEnum`` ``enum_type`` (an A-XDR
        ENUMERATED); an unknown value names the field, the value and the members."""
        at = self._offset
        value = self.u8(field)
        try:
            return enum_type(value)
        except ValueError:
            raise self.error(
                f"unknown {field.replace('_', '-')} {value}; expected {enum_choices(enum_type)}",
                field,
                at,
            ) from None

    def done(self) -> None:
        """Assert that every byte was read; trailing bytes raise :class:`InputError`."""
        if self.remaining:
            raise self.error(f"{_count(self.remaining, 'trailing byte')}", "end")


def enum_member(enum_type: type[_E], value: object, name: str) -> _E:
    """``value`` as a member of ``enum_type``, for builders: a wrong type is a ``TypeError``,
    an unknown value a ``ValueError`` naming the members (the KMS built it: a caller bug)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a {enum_type.__name__}, not {type(value).__name__}")
    try:
        return enum_type(value)
    except ValueError:
        raise ValueError(f"{name} must be {enum_choices(enum_type)}, got {value}") from None


def enum_choices(enum_type: type[enum.IntEnum]) -> str:
    """``0 (name) or 1 (name)``: the members of an enumeration, for messages."""
    return " or ".join(f"{int(member)} ({member.name.lower()})" for member in enum_type)


def _count(n: int, noun: str = "byte") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _tag_name(tag: int) -> str:
    try:
        return f" ({DataType(tag).name.lower().replace('_', '-')})"
    except ValueError:
        return ""
