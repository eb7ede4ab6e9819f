"""Reading and writing the KMS's files: the one place that opens them.

Two ways to write, because the KMS makes two kinds of file. An *output* the caller named
(``--out``: a result file, certificates) is written to a temporary file beside it, flushed to
disk and renamed over the name only when whole, so a reader never sees half a file and a
failure leaves the old one. A *ceremony file* (a request, an approval, a backup, a key
component) must never replace another: it is created exclusively and fails if the name exists,
because overwriting an officer's approval or a key component is a loss nobody notices until the
day it is needed (docs/architecture.md, invariant 7).

Errors are :class:`~kms.errors.InputError` naming the file, never quoting its content.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from kms.errors import InputError

__all__ = [
    "atomic_text_writer",
    "check_writable",
    "load_document",
    "read_bytes",
    "write_atomically",
    "write_new",
]


_EXISTS = "already exists; a {what} is not overwritten unless you say so (--force)"


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, or an InputError naming it and why it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None


def load_document(data: bytes, source: str, *, what: str, format: str) -> dict[str, Any]:
    """The JSON object of a document file whose ``"format"`` must be ``format``; an InputError
    names the file and says it is not a ``what`` otherwise."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"not a {what} (not JSON)", source=source) from None
    if not isinstance(body, dict) or body.get("format") != format:
        raise InputError(f"not a {what} (format is not {format})", source=source)
    return body


def _directory(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


@contextmanager
def atomic_text_writer(
    path: Path, *, overwrite: bool = True, what: str = "file"
) -> Iterator[IO[str]]:
    """A text handle on a temporary file beside ``path``, renamed into place only when the
    block ends without an error (and removed otherwise). Without ``overwrite`` an existing
    ``path`` is refused, before the block runs and again, atomically, when the file is put in
    place (a hard link, which never replaces a name)."""
    with _atomic(path, binary=False, overwrite=overwrite, what=what) as handle:
        yield handle


@contextmanager
def _atomic(
    path: Path, *, binary: bool, overwrite: bool = True, what: str = "file"
) -> Iterator[IO[Any]]:
    """The one way a file the caller named is written: beside it, flushed, then put in place."""
    if not overwrite and path.exists():
        raise InputError(_EXISTS.format(what=what), source=str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_directory(path))
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", source=str(path)) from None
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise InputError(_EXISTS.format(what=what), source=str(path)) from None
            Path(tmp).unlink()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (replacing what the caller named)."""
    with _atomic(path, binary=True) as handle:
        handle.write(data)


def check_writable(directory: Path) -> None:
    """Refuse a folder the KMS cannot write into, before any work is done for it."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".kms-probe.", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write there: {exc.strerror}", source=str(directory)) from None
    os.close(fd)
    os.unlink(probe)


def write_new(path: Path, data: bytes, *, mode: int = 0o644, what: str = "file") -> None:
    """Create ``path`` holding ``data``; refused if it exists. ``mode`` applies at creation
    (0600 for key components), so the content is never readable by others, even briefly."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InputError(
            f"already exists; a {what} is never overwritten: choose another name", source=str(path)
        ) from None
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", source=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
