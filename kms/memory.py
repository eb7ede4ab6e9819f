"""Secrets in the KMS's own memory: the one thing it can do about them.

Python gives no control over copies: ``bytes`` are immutable, and pyca, python-pkcs11 and the
database driver each take copies of their own. What the KMS can wipe is a ``bytearray`` it owns
(a key component, an AK held for GMAC, an AAD with the AK in it, Z read out of the token where
the profile says so), and it wipes each one as soon as it is done with it, through this one
function, so that a reader can find every place that does.
"""

from __future__ import annotations

__all__ = ["zeroise"]


def zeroise(buffer: bytearray) -> None:
    """Overwrite ``buffer`` with zeros in place (its length stays)."""
    buffer[:] = bytes(len(buffer))
