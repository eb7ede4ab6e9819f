"""Security suites: DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3, clause 9.2
(information security), the security-suite table (Table 19 as quoted in the project notes,
docs/dlms-security.md section 1; the clause number was not checked against a copy of the standard).

A security suite fixes every algorithm a security context uses: suite 0 is AES-GCM-128 with AES-128
key wrap; suite 1 adds ECDH/ECDSA on P-256 and SHA-256; suite 2 is AES-256 everywhere (GCM, the
authentication key in the AAD and key wrap) with P-384 and SHA-384. The suite travels in the low
nibble of the security control byte and in attribute 3 of the security setup object (class_id 64).

Exports:

* :class:`SecuritySuite` -- the suite ids 0, 1 and 2, with :attr:`SecuritySuite.key_length` (the
  length of every symmetric key: GUEK, GBEK, AK and KEK) and :meth:`SecuritySuite.parse` for text
  and numbers from outside (manifests, the CLI).
"""

from __future__ import annotations

import enum
import re

from kms.errors import InputError

__all__ = ["SecuritySuite"]

_DECIMAL = re.compile(r"[0-9]+", re.ASCII)


class SecuritySuite(enum.IntEnum):
    """A DLMS security suite id (bits 3..0 of the security control byte)."""

    AES_GCM_128 = 0
    ECDH_ECDSA_AES_GCM_128_SHA_256 = 1
    ECDH_ECDSA_AES_GCM_256_SHA_384 = 2

    @property
    def key_length(self) -> int:
        """Length in bytes of every symmetric key of the suite (EK, AK and KEK alike).

        Suite 2 is 32 bytes for the AK and the KEK too, not only the EK: dlms-cosem's
        ``validate_key`` and Gurux's suite-2 setters agree (notes section 1).
        """
        return 32 if self is SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384 else 16

    @classmethod
    def parse(cls, value: int | str) -> SecuritySuite:
        """The suite named by ``value``: an int, decimal text ("1"), or a member name.

        Names are accepted in either spelling, ``ECDH_ECDSA_AES_GCM_128_SHA_256`` or the Green
        Book's ``ECDH-ECDSA-AES-GCM-128-SHA-256``, case-insensitively. Surrounding whitespace in
        text is ignored (manifests are hand-edited); anything else raises :class:`InputError`
        naming the bad value.
        """
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _unknown(value)
        if isinstance(value, int):
            number = value
        else:
            text = value.strip()
            if _DECIMAL.fullmatch(text):
                # int() of a long digit string is bounded by Python's own limit; the range check
                # below rejects it anyway.
                number = int(text) if len(text) <= 3 else -1
            else:
                name = text.upper().replace("-", "_")
                member = cls.__members__.get(name)
                if member is None:
                    raise _unknown(value)
                return member
        try:
            return cls(number)
        except ValueError:
            raise _unknown(value) from None


def _unknown(value: object) -> InputError:
    shown = repr(value) if isinstance(value, str) else str(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return InputError(f"unknown security suite {shown}; expected 0, 1 or 2", field="security_suite")
