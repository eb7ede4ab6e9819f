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

from kms.errors import InputError
from kms.formats.components import (
    COMPONENT_LENGTH,
    check_value,
    component_file,
    load_component,
)
from kms.formats.files import read_bytes
from kms.memory import zeroise

MIN_COMPONENTS = 2
MAX_COMPONENTS = 9

__all__ = [
    "COMPONENT_LENGTH",
    "MAX_COMPONENTS",
    "MIN_COMPONENTS",
    "check_value",
    "combine",
    "component_file",
    "load_component",
    "read_components",
]


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
            loaded.append(load_component(read_bytes(path), str(path)))
    except BaseException:
        for component in loaded:
            zeroise(component)
        raise
    return loaded
