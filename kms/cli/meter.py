"""``kms meter list|show``: meters, setups, key versions, states and check values; never keys."""

from __future__ import annotations

from typing import Any

import click

from kms.cli._context import Context, console, emit_json, json_option, pass_context, run, table
from kms.db import KeyRole, Meter, MeterState
from kms.db import repository as repo
from kms.dlms.obis import format_logical_name
from kms.dlms.system_title import format_system_title, parse_system_title
from kms.errors import NotFoundError

#: Keys listed as the Green Book lists them: master key first, then GUEK, GBEK, GAK.
_ROLE_ORDER = {role: index for index, role in enumerate(KeyRole)}


def describe(meter: Meter, *, keys: bool) -> dict[str, Any]:
    """A meter as plain data (metadata and check values only)."""
    out: dict[str, Any] = {
        "system_title": format_system_title(meter.system_title),
        "serial": meter.serial,
        "manufacturer": meter.manufacturer,
        "suite": meter.suite,
        "state": meter.state.value,
        "initial_kek": meter.initial_kek_label,
        "created_at": meter.created_at.isoformat(),
        "confirmed_at": meter.confirmed_at.isoformat() if meter.confirmed_at else None,
    }
    if keys:
        out["setups"] = [
            {
                "logical_name": format_logical_name(setup.logical_name),
                "keys": [
                    {
                        "role": k.role.value,
                        "version": k.version,
                        "state": k.state.value,
                        "length": k.key_length,
                        "kcv": k.check_value.hex().upper(),
                        "wrapping_key": f"{k.wrapping_key_label} v{k.wrapping_key_version}",
                    }
                    for k in sorted(setup.keys, key=lambda k: (_ROLE_ORDER[k.role], k.version))
                ],
            }
            for setup in meter.setups
        ]
    return out


@click.group("meter")
def meter() -> None:
    """Meters known to this KMS."""


@meter.command("list")
@click.option(
    "--state", type=click.Choice([s.value for s in MeterState]), help="Only meters in this state."
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many meters.")
@json_option
@pass_context
def list_meters(ctx: Context, state: str | None, limit: int | None, json_output: bool) -> None:
    """List meters with their suite and state."""

    def body() -> None:
        with ctx.database().begin() as session:
            rows = [
                describe(m, keys=False)
                for m in repo.list_meters(session, MeterState(state) if state else None, limit)
            ]
        if json_output:
            emit_json(rows)
        else:
            table(
                f"Meters ({len(rows)})",
                ["system title", "serial", "suite", "state", "initial KEK"],
                [
                    [
                        r["system_title"],
                        r["serial"] or "",
                        str(r["suite"]),
                        r["state"],
                        r["initial_kek"],
                    ]
                    for r in rows
                ],
            )

    run(json_output, body)


@meter.command("show")
@click.option("--system-title", required=True, help="The meter's system title (16 hex characters).")
@json_option
@pass_context
def show(ctx: Context, system_title: str, json_output: bool) -> None:
    """Show one meter: setups, key versions, states and check values (never key bytes)."""

    def body() -> None:
        title = parse_system_title(system_title)
        with ctx.database().begin() as session:
            found = repo.meter_by_system_title(session, title)
            if found is None:
                raise NotFoundError(f"no meter with system title {format_system_title(title)}")
            data = describe(found, keys=True)
        if json_output:
            emit_json(data)
            return
        console.print(
            f"meter {data['system_title']}  suite {data['suite']}  state {data['state']}  "
            f"serial {data['serial'] or '-'}  initial KEK {data['initial_kek']}"
        )
        for setup in data["setups"]:
            table(
                f"security setup {setup['logical_name']}",
                ["role", "version", "state", "length", "KCV", "wrapped under"],
                [
                    [
                        k["role"],
                        str(k["version"]),
                        k["state"],
                        str(k["length"]),
                        k["kcv"],
                        k["wrapping_key"],
                    ]
                    for k in setup["keys"]
                ],
            )

    run(json_output, body)
