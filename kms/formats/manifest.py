"""The provisioning manifest: a CSV the factory station hands to ``kms provision``.

Header (order free, names exact): ``system_title,suite,initial_kek`` and optionally ``serial`` and
``setups``. ``setups`` lists security setup instances ``e`` of 0.0.43.0.e.255 separated by ``;``
(or their full logical names); empty means ``0``. Every problem is reported as an
:class:`~kms.errors.InputError` naming the file, the data row (1 = the first meter after the
header, 0 = the header itself) and the column, and the whole file is checked before anything is
generated or written. Its rows are described by ``schema/formats/manifest-row.schema.json``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from kms.dlms.obis import parse_setups_field, security_setup_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title, parse_system_title
from kms.errors import InputError

REQUIRED_COLUMNS = ("system_title", "suite", "initial_kek")
OPTIONAL_COLUMNS = ("serial", "setups")


@dataclass(frozen=True)
class ManifestRow:
    """One meter to provision."""

    row: int
    system_title: bytes
    suite: SecuritySuite
    initial_kek: str
    serial: str | None
    setups: tuple[bytes, ...]  # logical names, 6 bytes each


def _field_error(source: str, row: int, column: str, exc: InputError) -> InputError:
    return InputError(exc.detail, source=source, row=row, field=column)


def read_manifest(path: Path) -> list[ManifestRow]:
    """Parse and check a manifest; duplicates within the file are errors."""
    source = path.name
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot open the manifest: {exc.strerror}", source=str(path)) from None
    rows: list[ManifestRow] = []
    seen: dict[bytes, int] = {}
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable CSV file: {exc}", source=source, row=0) from None
        if not header:
            raise InputError("the manifest is empty (no header line)", source=source)
        names = [name.strip() for name in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise InputError(
                f"the header lacks the column(s) {', '.join(missing)}", source=source, row=0
            )
        unknown = [n for n in names if n not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            raise InputError(f"unknown column(s) {', '.join(unknown)}", source=source, row=0)
        if len(set(names)) != len(names):
            raise InputError("a column is named twice in the header", source=source, row=0)
        reader.fieldnames = names
        try:
            for number, record in enumerate(reader, start=1):
                rows.append(_parse_row(source, number, record, seen))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"not a readable CSV file: {exc}", source=source, row=len(rows) + 1
            ) from None
    if not rows:
        raise InputError("the manifest lists no meters", source=source)
    return rows


def _parse_row(
    source: str,
    number: int,
    record: dict[str | None, str | list[str] | None],
    seen: dict[bytes, int],
) -> ManifestRow:
    if None in record:
        raise InputError("the row has more fields than the header", source=source, row=number)
    values: dict[str, str] = {}
    for key, value in record.items():
        if value is None:
            if key in REQUIRED_COLUMNS:
                raise InputError(
                    "the row has fewer fields than the header", source=source, row=number, field=key
                )
            value = ""
        values[str(key)] = str(value).strip()
    try:
        title = parse_system_title(values["system_title"])
    except InputError as exc:
        raise _field_error(source, number, "system_title", exc) from None
    if title in seen:
        raise InputError(
            f"system title {format_system_title(title)} is listed twice "
            f"(first in row {seen[title]})",
            source=source,
            row=number,
            field="system_title",
        )
    seen[title] = number
    try:
        suite = SecuritySuite.parse(values["suite"])
    except InputError as exc:
        raise _field_error(source, number, "suite", exc) from None
    label = values["initial_kek"]
    if not label:
        raise InputError(
            "empty: name the label of the transport key (kms transport-key list)",
            source=source,
            row=number,
            field="initial_kek",
        )
    try:
        setups = parse_setups_field(values.get("setups", ""))
    except InputError as exc:
        raise _field_error(source, number, "setups", exc) from None
    return ManifestRow(
        row=number,
        system_title=title,
        suite=suite,
        initial_kek=label,
        serial=values.get("serial") or None,
        setups=tuple(security_setup_logical_name(e) for e in setups),
    )
