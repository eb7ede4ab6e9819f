"""The key component file: one officer's share of a key held in split knowledge.

A component is 32 random bytes (an AES-256 key's worth) in a text file of its own, written with
mode 0600: a comment line, a ``# kcv:`` line with its key check value (KCV: the first 3 bytes of
AES-ECB of a zero block, what a token reports as CKA_CHECK_VALUE, measured equal on SoftHSM
2.6.1), and 64 hex digits, so that a component typed back in from paper is checked. Reading
accepts whitespace anywhere in the digits and any ``#`` comment line. Errors name the file,
never its content. (``schema/formats/README.md`` describes it; it is text, not JSON.)
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kms.errors import InputError
from kms.memory import zeroise

__all__ = ["COMPONENT_LENGTH", "check_value", "component_file", "load_component"]

COMPONENT_LENGTH = 32
_KCV_PREFIX = "# kcv:"


def check_value(key: bytes | bytearray) -> str:
    """The KCV of an AES key: the first 3 bytes of AES-ECB of a zero block, as upper-case hex
    (what the token reports as CKA_CHECK_VALUE, measured equal)."""
    encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()  # noqa: S305 - a KCV
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex().upper()


def component_file(value: bytes) -> bytes:
    """The text of a key component file: its KCV (so that a component typed back in from paper
    is checked) and the value in hex."""
    if len(value) != COMPONENT_LENGTH:
        raise ValueError(f"a key component is {COMPONENT_LENGTH} bytes")
    return (
        "# dlms-kms CA backup key component: one officer keeps it, offline, apart from the others\n"
        f"{_KCV_PREFIX} {check_value(value)}\n{value.hex().upper()}\n"
    ).encode("ascii")


def load_component(data: bytes, source: str) -> bytearray:
    """A key component from its file: 64 hex digits (whitespace ignored), ``#`` lines being
    comments; a ``# kcv:`` line, if present, must match. Errors never quote the content."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InputError("not a key component file (not ASCII text)", source=source) from None
    digits, kcv = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.lower().startswith(_KCV_PREFIX):
            kcv = stripped[len(_KCV_PREFIX) :].strip().upper()
        elif not stripped.startswith("#"):
            digits.append("".join(stripped.split()))
    hex_text = "".join(digits)
    if len(hex_text) != 2 * COMPONENT_LENGTH:
        raise InputError(
            f"a key component is {2 * COMPONENT_LENGTH} hex digits, not {len(hex_text)}",
            source=source,
        )
    try:
        value = bytearray.fromhex(hex_text)
    except ValueError:
        raise InputError("the key component is not hexadecimal", source=source) from None
    if kcv is not None and check_value(value) != kcv:
        zeroise(value)
        raise InputError(
            "the key component does not match its check value (mistyped?)", source=source
        )
    return value
