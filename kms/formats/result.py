"""The provisioning result, ``result.jsonl``: one line per meter, in manifest order.

Each line (``schema/formats/provision-result.schema.json``) gives the meter's system title and
suite and, per security setup, the key check values (KCVs) of its new keys and the
``key_transfer`` action-requests the station writes into the meter: first key_id 3 (the new KEK
under the meter's initial KEK), then key_ids 0, 1 and 2 under the new KEK. Hex is upper case.
``kms provision confirm --from`` reads the system titles back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kms.dlms.obis import format_logical_name
from kms.dlms.system_title import format_system_title
from kms.errors import InputError

__all__ = ["ResultSetup", "read_result_titles", "result_line"]


@dataclass(frozen=True)
class ResultSetup:
    """One security setup of a provisioned meter, as the result shows it."""

    logical_name: bytes
    #: role name (KEK, GUEK, GBEK, GAK) -> its KCV, in the order the line lists them
    kcv: Mapping[str, bytes]
    apdus: Sequence[bytes]


def result_line(system_title: bytes, suite: int, setups: Sequence[ResultSetup]) -> str:
    """One line of result.jsonl (with its newline)."""
    obj = {
        "system_title": format_system_title(system_title),
        "suite": suite,
        "setups": [
            {
                "logical_name": format_logical_name(s.logical_name),
                "kcv": {role: value.hex().upper() for role, value in s.kcv.items()},
                "apdus": [apdu.hex().upper() for apdu in s.apdus],
            }
            for s in setups
        ],
    }
    return json.dumps(obj, separators=(",", ":")) + "\n"


def read_result_titles(path: Path) -> list[bytes]:
    """System titles listed in a result.jsonl (for ``kms provision confirm --from``)."""
    titles: list[bytes] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            title = bytes.fromhex(obj["system_title"])
        except (ValueError, KeyError, TypeError):
            raise InputError(
                "not a result line with a hexadecimal system_title",
                source=path.name,
                row=number,
                field="system_title",
            ) from None
        if len(title) != 8:
            raise InputError(
                "system title is not 8 bytes", source=path.name, row=number, field="system_title"
            )
        titles.append(title)
    return titles
