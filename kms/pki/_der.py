"""The schema-free rules of DER: ITU-T X.690 (02/2021) section 10 (definite, minimal lengths; no
constructed strings) and 8.2, 8.3, 8.6 with 11.1 (BOOLEAN, INTEGER and BIT STRING contents).

asn1crypto parses BER, a superset: a certificate with a long-form length where a short one fits,
an indefinite length or a padded INTEGER loads and even round-trips its signature, while OpenSSL
and pyca refuse it. Accepting such bytes would let two readers of one certificate disagree, so the
loaders run this walk over every TLV first. It needs no schema because these rules hold for every
universal tag wherever it appears; what it cannot see (contents of OCTET STRINGs, SET OF
ordering) is left to the structure parser and the signature.

Exports (package-internal):

* :class:`DerError` -- a ``ValueError`` carrying the offset of the first violation.
* :func:`check_der` -- exactly one DER TLV spanning ``data``, or :class:`DerError`.
* :func:`read_header` -- one TLV's tag and content bounds, for walkers of a known shape
  (:mod:`kms.pki.template`).
"""

from __future__ import annotations

__all__ = ["DerError", "check_der", "read_header"]

#: Deeper nesting than this is no certificate, CSR or CRL; it bounds the recursion.
MAX_DEPTH = 32
_CONSTRUCTED = 0x20
_UNIVERSAL_CONSTRUCTED = frozenset({0x30, 0x31})  # SEQUENCE, SET
_BOOLEAN, _INTEGER, _BIT_STRING, _ENUMERATED = 0x01, 0x02, 0x03, 0x0A


class DerError(ValueError):
    """``data`` breaks a DER rule at ``offset``."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.reason = reason
        self.offset = offset


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag byte, content start, content end) of the TLV at ``pos``."""
    start = pos
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # high tag number form (X.690 8.1.2.4): base-128, minimal
        if pos >= end or data[pos] == 0x80:
            raise DerError("bad high tag number", start)
        while pos < end and data[pos] & 0x80:
            pos += 1
        pos += 1
    if pos >= end:
        raise DerError("truncated header", start)
    first = data[pos]
    pos += 1
    if first == 0x80:
        raise DerError("indefinite length", start)
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count > 4 or pos + count > end:
            raise DerError("length out of range", start)
        length = int.from_bytes(data[pos : pos + count], "big")
        if data[pos] == 0 or length < 0x80:
            raise DerError("non-minimal length", start)
        pos += count
    if pos + length > end:
        raise DerError(f"length {length} runs past the end", start)
    return tag, pos, pos + length


def read_header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag byte, content start, content end) of the TLV at ``pos``, its length DER-checked;
    :class:`DerError` when it is not one ending by ``end``."""
    if pos >= end:
        raise DerError("truncated header", pos)
    return _header(data, pos, end)


def _check_primitive(tag: int, content: bytes, offset: int) -> None:
    if tag == _BOOLEAN and content not in (b"\x00", b"\xff"):
        raise DerError("BOOLEAN is not 00 or FF", offset)
    if tag in (_INTEGER, _ENUMERATED):
        if not content:
            raise DerError("empty INTEGER", offset)
        if len(content) > 1 and (
            (content[0] == 0x00 and content[1] < 0x80)
            or (content[0] == 0xFF and content[1] >= 0x80)
        ):
            raise DerError("non-minimal INTEGER", offset)
    if tag == _BIT_STRING and (
        not content or content[0] > 7 or (len(content) == 1 and content[0] != 0)
    ):
        raise DerError("bad BIT STRING unused-bits octet", offset)


def _walk(data: bytes, pos: int, end: int, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DerError("nested too deep", pos)
    while pos < end:
        tag, start, stop = _header(data, pos, end)
        if tag & _CONSTRUCTED:
            if tag & 0xC0 == 0 and tag not in _UNIVERSAL_CONSTRUCTED:
                raise DerError("constructed string", pos)
            _walk(data, start, stop, depth + 1)
        elif tag & 0xC0 == 0:
            _check_primitive(tag, data[start:stop], pos)
        pos = stop


def check_der(data: bytes) -> None:
    """Raise :class:`DerError` unless ``data`` is one TLV, DER-framed all the way down."""
    if not data:
        raise DerError("empty input", 0)
    _tag, _start, stop = _header(data, 0, len(data))
    if stop != len(data):
        raise DerError(f"{len(data) - stop} bytes of trailing data", stop)
    _walk(data, 0, len(data), 0)
