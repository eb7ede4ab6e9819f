"""``kms meter list|show``: meters, setups, key versions, states and check values; never keys."""

from __future__ import annotations

import click

from kms.cli._context import Context, Output, command, console, table
from kms.services.vocabulary import MeterState, parse_system_title


@click.group("meter")
def meter() -> None:
    """Meters known to this KMS."""


@command(meter, "list")
@click.option(
    "--state", type=click.Choice([s.value for s in MeterState]), help="Only meters in this state."
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many meters.")
def list_meters(ctx: Context, out: Output, state: str | None, limit: int | None) -> None:
    """List meters with their suite and state."""
    rows = ctx.services.meters.list(state=MeterState(state) if state else None, limit=limit)
    out.result(
        rows,
        lambda: table(
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
        ),
    )


@command(meter, "show")
@click.option("--system-title", required=True, help="The meter's system title (16 hex characters).")
def show(ctx: Context, out: Output, system_title: str) -> None:
    """Show one meter: setups, key versions, states and check values (never key bytes)."""
    data = ctx.services.meters.show(parse_system_title(system_title))

    def text() -> None:
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

    out.result(data, text)
