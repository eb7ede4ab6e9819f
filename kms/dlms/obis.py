"""Logical names (OBIS codes): IEC 62056-6-1 (OBIS) and DLMS UA 1000-1 ("Blue Book") /
IEC 62056-6-2, the security setup objects ``0.0.43.0.e.255`` (interface class 64); clause numbers
were not checked against a copy of the standards (see docs/dlms-security.md section 4).

A COSEM logical name is 6 bytes, the value groups A to F of an OBIS code. The KMS meets them in two
places: as the instance field of an action-request addressed to a security setup, and in the
``setups`` column of a provisioning manifest, which lists the security setups (one per client
association) a meter gets keys for.

Exports:

* :data:`LOGICAL_NAME_LENGTH` -- 6.
* :func:`parse_logical_name` -- ``"0.0.43.0.0.255"``, ``"0-0:43.0.0.255"`` or 12 hex digits to 6
  bytes.
* :func:`format_logical_name` -- 6 bytes to ``"a.b.c.d.e.f"``.
* :func:`security_setup_logical_name` -- the logical name of security setup instance ``e``.
* :func:`is_security_setup_logical_name` -- whether 6 bytes are ``0.0.43.0.e.255``.
* :func:`parse_setups_field` -- the manifest's ``setups`` column to a tuple of instances ``e``.
"""

from __future__ import annotations

import re

from kms.errors import InputError

__all__ = [
    "LOGICAL_NAME_LENGTH",
    "format_logical_name",
    "is_security_setup_logical_name",
    "parse_logical_name",
    "parse_setups_field",
    "security_setup_logical_name",
]

LOGICAL_NAME_LENGTH = 6

# Value groups of a security setup: A=0 (abstract), B=0, C=43, D=0, E=instance, F=255.
_SECURITY_SETUP_PREFIX = bytes([0, 0, 43, 0])
_SECURITY_SETUP_SUFFIX = 255

_GROUP = r"([0-9]{1,3})"
_DOTTED = re.compile(r"\.".join([_GROUP] * 6), re.ASCII)
_OBIS = re.compile(_GROUP + "-" + _GROUP + ":" + r"\.".join([_GROUP] * 4), re.ASCII)
_HEX12 = re.compile(r"[0-9A-Fa-f]{12}", re.ASCII)
_INSTANCE = re.compile(r"[0-9]{1,3}", re.ASCII)


def parse_logical_name(text: str, *, field: str = "logical_name") -> bytes:
    """The 6-byte logical name written as ``text``.

    Accepted forms: dotted decimal ``0.0.43.0.0.255``, the OBIS reduced form ``0-0:43.0.0.255``,
    and 12 hex digits ``00002B0000FF``. Each group is 0..255. No whitespace is accepted. Raises
    :class:`InputError` naming ``field``, the bad group and its offset.
    """
    if not isinstance(text, str):
        raise TypeError(f"logical name text must be str, not {type(text).__name__}")
    return _parse_logical_name(text, field, "", 0)


def _parse_logical_name(text: str, field: str, where: str, base: int) -> bytes:
    """:func:`parse_logical_name` for text found at offset ``base`` of a longer field."""
    if _HEX12.fullmatch(text):
        return bytes.fromhex(text)
    match = _DOTTED.fullmatch(text) or _OBIS.fullmatch(text)
    if match is None:
        raise InputError(
            f"{where}logical name {_show(text)} is not 'a.b.c.d.e.f' (6 groups 0..255), "
            "'a-b:c.d.e.f' or 12 hex digits",
            field=field,
        )
    groups = []
    for index in range(1, 7):
        value = int(match.group(index))
        if value > 255:
            raise InputError(
                f"{where}logical name group {'ABCDEF'[index - 1]} is {value} at offset "
                f"{base + match.start(index)}; expected 0..255",
                field=field,
            )
        groups.append(value)
    return bytes(groups)


def format_logical_name(ln: bytes) -> str:
    """The dotted-decimal text of a 6-byte logical name (a wrong length is a ``ValueError``)."""
    _check(ln)
    return ".".join(str(byte) for byte in ln)


def security_setup_logical_name(instance: int) -> bytes:
    """The logical name ``0.0.43.0.<instance>.255`` of security setup ``instance`` (0..255)."""
    if isinstance(instance, bool) or not isinstance(instance, int):
        raise TypeError(f"security setup instance must be int, not {type(instance).__name__}")
    if not 0 <= instance <= 255:
        raise ValueError(f"security setup instance must be 0..255, got {instance}")
    return _SECURITY_SETUP_PREFIX + bytes([instance, _SECURITY_SETUP_SUFFIX])


def is_security_setup_logical_name(ln: bytes) -> bool:
    """Whether ``ln`` is a security setup's logical name, ``0.0.43.0.e.255``."""
    _check(ln)
    return bytes(ln[:4]) == _SECURITY_SETUP_PREFIX and ln[5] == _SECURITY_SETUP_SUFFIX


def parse_setups_field(text: str) -> tuple[int, ...]:
    """The security setup instances listed in a manifest's ``setups`` column.

    The column holds ``;``-separated items, each an instance number ``e`` (``"0;1"``) or the full
    logical name of a security setup (``"0.0.43.0.1.255"``, any form :func:`parse_logical_name`
    takes). Whitespace around an item is ignored. An empty (or blank) column means the one
    management setup, ``(0,)``. Order is kept. Raises :class:`InputError` (field ``setups``) for
    an empty item, a non-number, an instance outside 0..255, a logical name that is not a
    security setup, or an instance listed twice.
    """
    if not isinstance(text, str):
        raise TypeError(f"setups text must be str, not {type(text).__name__}")
    if not text.strip():
        return (0,)
    instances: list[int] = []
    offset = 0
    for position, raw in enumerate(text.split(";"), start=1):
        item = raw.strip()
        start = offset + len(raw) - len(raw.lstrip())
        where = f"item {position} at offset {start}"
        offset += len(raw) + 1
        if not item:
            raise InputError(f"{where} is empty", field="setups")
        if _INSTANCE.fullmatch(item):
            instance = int(item)
            if instance > 255:
                raise InputError(
                    f"{where}: security setup instance {instance} is out of range 0..255",
                    field="setups",
                )
        elif _DOTTED.fullmatch(item) or _OBIS.fullmatch(item) or _HEX12.fullmatch(item):
            ln = _parse_logical_name(item, "setups", f"{where}: ", start)
            if not is_security_setup_logical_name(ln):
                raise InputError(
                    f"{where}: logical name {format_logical_name(ln)} is not a security "
                    "setup (0.0.43.0.e.255)",
                    field="setups",
                )
            instance = ln[4]
        else:
            raise InputError(
                f"{where}: {_show(item)} is neither an instance number 0..255 nor a security "
                "setup logical name",
                field="setups",
            )
        if instance in instances:
            raise InputError(f"{where}: security setup {instance} is listed twice", field="setups")
        instances.append(instance)
    return tuple(instances)


def _check(ln: bytes) -> None:
    if not isinstance(ln, bytes | bytearray | memoryview):
        raise TypeError(f"logical name must be bytes, not {type(ln).__name__}")
    if len(ln) != LOGICAL_NAME_LENGTH:
        raise ValueError(f"logical name must be {LOGICAL_NAME_LENGTH} bytes, got {len(ln)}")


def _show(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
