"""System titles: DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3, clause 9.2 (information
security: the system title), and the DLMS UA FLAG manufacturer-id register; see
docs/dlms-security.md section 7 (secondary sources, clause numbers not checked against the text).

A system title is 8 bytes: 3 bytes of FLAG manufacturer id in ASCII (``MMM`` = ``4D4D4D``) and 5
bytes that make it unique. It is the fixed field of every GCM IV (``system_title || IC``), so two
meters sharing one title and one key would reuse IVs: the KMS keeps titles unique, and these
functions keep their text form canonical (16 upper-case hex digits) so that uniqueness holds.

Exports:

* :data:`SYSTEM_TITLE_LENGTH` -- 8.
* :func:`parse_system_title` -- 16 hex characters to 8 bytes, strictly.
* :func:`format_system_title` -- 8 bytes to 16 upper-case hex characters.
* :func:`manufacturer_id` -- the FLAG id in the first 3 bytes, when they spell one.
"""

from __future__ import annotations

from kms.errors import InputError

__all__ = [
    "SYSTEM_TITLE_LENGTH",
    "format_system_title",
    "manufacturer_id",
    "parse_system_title",
]

SYSTEM_TITLE_LENGTH = 8

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_FLAG_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_system_title(text: str) -> bytes:
    """The 8-byte system title written as ``text``: exactly 16 hex digits, either case.

    No separators, prefix or whitespace are accepted -- a system title read from a manifest is
    compared with the one a meter sends, and a lax parser would let two spellings of one title
    through. Raises :class:`InputError` (field ``system_title``) naming the first bad character
    and its offset, or the length found.
    """
    if not isinstance(text, str):
        raise TypeError(f"system title text must be str, not {type(text).__name__}")
    for offset, char in enumerate(text):
        if char not in _HEX_DIGITS:
            what = "whitespace" if char.isspace() else repr(char)
            raise InputError(
                f"system title is not hexadecimal: {what} at offset {offset}",
                field="system_title",
            )
    if len(text) % 2:
        raise InputError(
            f"system title must be 8 bytes (16 hex characters), got {len(text)} hex characters",
            field="system_title",
        )
    if len(text) != 2 * SYSTEM_TITLE_LENGTH:
        raise InputError(
            f"system title must be 8 bytes (16 hex characters), got {len(text) // 2} bytes",
            field="system_title",
        )
    return bytes.fromhex(text)


def format_system_title(st: bytes) -> str:
    """The canonical text form of a system title: 16 upper-case hex digits.

    Upper case because Gurux's certificate subjects (``CN=<hex ST>``) and most meter tools print
    it that way. A wrong length is a caller bug (``ValueError``).
    """
    _check(st)
    return st.hex().upper()


def manufacturer_id(st: bytes) -> str | None:
    """The three-letter FLAG manufacturer id in the first 3 bytes, or ``None``.

    ``None`` when those bytes are not three ASCII upper-case letters: companion specifications
    may lay the title out differently, so the absence of a FLAG id is not an error.
    """
    _check(st)
    head = bytes(st[:3])
    if all(byte in _FLAG_LETTERS for byte in head):
        return head.decode("ascii")
    return None


def _check(st: bytes) -> None:
    if not isinstance(st, bytes | bytearray | memoryview):
        raise TypeError(f"system title must be bytes, not {type(st).__name__}")
    if len(st) != SYSTEM_TITLE_LENGTH:
        raise ValueError(f"system title must be {SYSTEM_TITLE_LENGTH} bytes, got {len(st)}")
