"""Key components (split knowledge): a key that officers hold in parts, none of which alone says
anything about it, as classic key ceremonies do (ANSI X9.24-1 style XOR components, each with a
key check value).

A component is 32 random bytes (an AES-256 key's worth) in a text file of its own: 64 hex digits
and a ``# kcv:`` line, so that a component typed back in from paper is checked. The key is the XOR
of two or more components. Its check value (KCV) is the first 3 bytes of AES-ECB of a zero block
under it, which is what a token reports as CKA_CHECK_VALUE (measured equal on SoftHSM 2.6.1).

Used by :mod:`kms.services.pki.ca_backup` for the CA backup wrapping key. Errors name the file,
never its content.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kms.errors import InputError
from kms.memory import zeroise

COMPONENT_LENGTH = 32
MIN_COMPONENTS = 2
MAX_COMPONENTS = 9
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


def combine(components: Sequence[bytearray]) -> bytearray:
    """The backup wrapping key: the XOR of the components, in a buffer the caller zeroises."""
    if not MIN_COMPONENTS <= len(components) <= MAX_COMPONENTS:
        raise InputError(
            f"the backup key is built from {MIN_COMPONENTS} to {MAX_COMPONENTS} key components, "
            f"not {len(components)}"
        )
    if any(len(c) != COMPONENT_LENGTH for c in components):
        raise ValueError(f"key components are {COMPONENT_LENGTH} bytes")
    if len({bytes(c) for c in components}) != len(components):
        raise InputError("two key components are the same: their XOR would cancel out")
    key = bytearray(COMPONENT_LENGTH)
    for component in components:
        if not any(component):
            raise InputError("a key component is all zeros")
        for i, byte in enumerate(component):
            key[i] ^= byte
    if not any(key):
        raise InputError("the key components XOR to zero")
    return key


def read_components(paths: Sequence[Path]) -> list[bytearray]:
    """The components in the files ``paths`` (:func:`load_component`); those already read are
    zeroised if a later one is bad. The caller zeroises the rest."""
    loaded: list[bytearray] = []
    try:
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None
            loaded.append(load_component(data, str(path)))
    except BaseException:
        for component in loaded:
            zeroise(component)
        raise
    return loaded
