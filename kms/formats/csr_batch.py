"""CSRs in, certificates out: what ``kms cert issue`` reads and writes.

Three shapes, the output following the input:

* one CSR file (DER or PEM; suffix free) -> one certificate file (PEM; DER if it ends in .der);
* a folder of ``*.der``, ``*.pem``, ``*.csr`` and ``*.p10`` files -> a folder of
  ``<SYSTEM_TITLE>-<type>.pem``;
* a JSONL file, one ``{"csr": PEM text or base64 DER, "type": optional}`` per line
  (``schema/formats/csr-batch-line.schema.json``) -> a JSONL file, one line per certificate with
  its PEM (``certificate-batch-line.schema.json``).

Errors name the file and, in JSONL, the line. Outputs are written atomically, and the
destination is checked writable before any certificate is issued.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from kms.errors import InputError
from kms.formats.files import check_writable, read_bytes, write_atomically
from kms.pki import encoding
from kms.pki.profiles import CertificateType

__all__ = [
    "CsrBatch",
    "CsrItem",
    "IssuedFile",
    "certificate_line",
    "prepare_destination",
    "read_csrs",
    "write_certificates",
]

_CSR_SUFFIXES = {".der", ".pem", ".csr", ".p10"}
Shape = Literal["file", "folder", "jsonl"]


@dataclass(frozen=True)
class CsrItem:
    """One CSR to issue for: its bytes, where it came from (for errors), and the type asked."""

    data: bytes
    source: str
    certificate_type: CertificateType


@dataclass(frozen=True)
class CsrBatch:
    """The CSRs read, and the shape the certificates are written in."""

    shape: Shape
    items: list[CsrItem]


class IssuedFile(Protocol):
    """What writing an issued certificate needs of it."""

    @property
    def der(self) -> bytes: ...

    @property
    def system_title(self) -> str: ...

    @property
    def certificate_type(self) -> str: ...

    def to_dict(self) -> dict[str, object]: ...


def read_csrs(path: Path, default: CertificateType) -> CsrBatch:
    """The CSRs of a file, a folder or a JSONL file (module docstring)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _CSR_SUFFIXES)
        if not files:
            raise InputError(
                "the folder holds no *.der, *.pem, *.csr or *.p10 file", source=str(path)
            )
        return CsrBatch("folder", [CsrItem(read_bytes(p), str(p), default) for p in files])
    if path.suffix.lower() == ".jsonl":
        return CsrBatch("jsonl", _read_jsonl(path, default))
    return CsrBatch("file", [CsrItem(read_bytes(path), str(path), default)])


def _read_jsonl(path: Path, default: CertificateType) -> list[CsrItem]:
    items = []
    for number, line in enumerate(read_bytes(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError("not a JSON object", source=str(path), row=number) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("csr"), str):
            raise InputError('each line is {"csr": ..., "type": ...}', source=str(path), row=number)
        text = obj["csr"]
        if "-----BEGIN" in text:
            data = text.encode()
        else:
            try:
                data = base64.b64decode(text, validate=True)
            except binascii.Error:
                raise InputError(
                    "csr is neither PEM nor base64 DER", source=str(path), row=number, field="csr"
                ) from None
        kind = obj.get("type")
        cert_type = CertificateType.parse(kind) if isinstance(kind, str) else default
        items.append(CsrItem(data, f"{path}:{number}", cert_type))
    if not items:
        raise InputError("the JSONL file holds no CSR", source=str(path))
    return items


def prepare_destination(out: Path, shape: Shape) -> None:
    """Refuse an unwritable destination before anything is issued (a folder is made)."""
    if shape == "folder":
        if out.exists() and not out.is_dir():
            raise InputError("--out must be a folder when --csr is a folder", source=str(out))
        out.mkdir(parents=True, exist_ok=True)
        check_writable(out)
    else:
        check_writable(out.parent if str(out.parent) else Path("."))


def certificate_line(issued: IssuedFile) -> str:
    """One line of a certificate batch (JSON, without its newline)."""
    pem = encoding.certificate_pem(encoding.load_certificate(issued.der)).decode()
    return json.dumps({**issued.to_dict(), "certificate": pem}, sort_keys=True)


def write_certificates(out: Path, shape: Shape, issued: Sequence[IssuedFile]) -> None:
    """Write what was issued in the shape the CSRs came in."""
    if shape == "file":
        write_atomically(out, encoding.pem_or_der(issued[0].der, "CERTIFICATE", out.suffix))
    elif shape == "folder":
        for c in issued:
            target = out / f"{c.system_title}-{c.certificate_type}.pem"
            write_atomically(target, encoding.pem_or_der(c.der, "CERTIFICATE", ".pem"))
    else:
        write_atomically(out, ("\n".join(certificate_line(c) for c in issued) + "\n").encode())
