"""Key material typed in by people: a vendor's transport key file and an HLS secret file.

Both are hex text (whitespace and a ``0x`` prefix allowed), never raw bytes, so that a trailing
newline can never become part of a key. Errors name the file and never quote it. These are the
named, audited exceptions where plaintext key material enters the KMS (docs/architecture.md,
invariant 1): the services import each into the token at once.
"""

from __future__ import annotations

from pathlib import Path

from kms.errors import InputError

__all__ = ["MAX_HLS_SECRET", "parse_hex_text", "read_hls_secret", "read_transport_key"]

#: HLS mechanism 6's secret: 1 to 64 bytes.
MAX_HLS_SECRET = 64


def parse_hex_text(text: str, source: str, what: str) -> bytes:
    """The bytes a key file holds in hex (whitespace and a 0x prefix allowed)."""
    cleaned = "".join(text.split())
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InputError(f"the {what} does not hold hexadecimal", source=source) from None


def parse_transport_key(text: str, source: str) -> bytes:
    """A transport key file's key: 16 or 32 bytes."""
    value = parse_hex_text(text, source, "key file")
    if len(value) not in (16, 32):
        raise InputError(
            f"a transport key is 16 or 32 bytes, the key file holds {len(value)}", source=source
        )
    return value


def read_transport_key(path: Path) -> bytes:
    """The key in a transport key file, with errors naming the file."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise InputError("cannot read the key file as text", source=str(path)) from None
    return parse_transport_key(text, str(path))


def read_hls_secret(path: Path) -> bytes:
    """The secret in an HLS secret file: 1 to 64 bytes."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise InputError(f"cannot read the secret file: {reason}", source=str(path)) from None
    value = parse_hex_text(text, str(path), "secret file")
    if not 1 <= len(value) <= MAX_HLS_SECRET:
        raise InputError(
            f"an HLS secret is 1 to {MAX_HLS_SECRET} bytes, the file holds {len(value)}",
            source=str(path),
        )
    return value
