"""Challenges for HLS (``kms hls challenge``): fresh random bytes from the token's generator.

The HLS service (:mod:`kms.services.hes.hls`) makes challenges too, but it is built on the
head-end's working keys, which need the database; a challenge needs the token alone, so a
station can make one with the database out of reach.
"""

from __future__ import annotations

from kms.dlms import hls
from kms.errors import InputError
from kms.services.common.resources import Resources

__all__ = ["ChallengeService"]


class ChallengeService:
    """Client challenges CtoS from the token (module docstring), ``Services.hls_challenges``."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def challenge(self, length: int = 16) -> bytes:
        """``length`` bytes (8 to 64) from the token's random number generator."""
        if not hls.MIN_CHALLENGE <= length <= hls.MAX_CHALLENGE:
            raise InputError(
                f"a challenge is {hls.MIN_CHALLENGE} to {hls.MAX_CHALLENGE} bytes, got {length}",
                field="length",
            )
        return self._resources.hsm().random(length)
