"""``kms provision``: steps 1 and 2 for the factory provisioning station."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kms.cli._context import Context, Output, command, table
from kms.errors import InputError
from kms.services.provisioning.provision import ProvisionReport
from kms.services.vocabulary import parse_system_title


@command(None, "provision", cls=click.Group, invoke_without_command=True)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV: system_title,suite,initial_kek[,serial][,setups].",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write result.jsonl (one JSON object per meter, written atomically).",
)
def provision(ctx: Context, out: Output, manifest: Path | None, out_path: Path | None) -> None:
    """Generate a unique key set per meter in the token and the key_transfer APDUs to write.

    For each meter and security setup: KEK, GUEK, GBEK and GAK are generated in the token, stored
    wrapped as version 1 (PENDING), and result.jsonl gets two action-requests: the new KEK wrapped
    under the meter's initial KEK, then GUEK, GBEK and GAK wrapped under the new KEK. Confirm
    with `kms provision confirm` once the station has written them. Re-running a manifest for
    meters still PENDING returns the same APDUs; an ACTIVE meter is refused.
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    if manifest is None or out_path is None:
        raise InputError("give both --manifest and --out (or a subcommand: confirm)")
    # The service reads the manifest first: a bad one is reported even when the token or the
    # database is not ready.
    service = ctx.services.provisioning
    report: ProvisionReport
    if out.json:
        report = service.provision(manifest, out_path, actor=ctx.actor)
    else:
        with Progress(
            TextColumn("provisioning"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("meters", total=None)
            report = service.provision(
                manifest,
                out_path,
                actor=ctx.actor,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    summary = {
        "meters": report.meters,
        "generated": report.generated,
        "repeated": report.repeated,
        "keys": report.keys,
        "seconds": round(report.seconds, 3),
        "meters_per_second": round(report.meters_per_second, 1),
        "out": report.out,
    }
    out.result(
        summary, lambda: table("Provisioning", list(summary), [[str(v) for v in summary.values()]])
    )


assert isinstance(provision, click.Group)


@command(provision, "confirm")
@click.option(
    "--system-title",
    "system_titles",
    multiple=True,
    help="A meter's system title (hex); repeatable.",
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A result.jsonl: confirm every meter it lists.",
)
def confirm(
    ctx: Context, out: Output, system_titles: tuple[str, ...], from_file: Path | None
) -> None:
    """Mark meters ACTIVE once the station has written their keys (PENDING -> ACTIVE).

    Meters already ACTIVE are reported, not refused, so a station can retry a confirmation.
    """

    if not system_titles and from_file is None:
        raise InputError("give --system-title or --from")
    report = ctx.services.provisioning.confirm(
        [parse_system_title(t) for t in system_titles],
        actor=ctx.actor,
        result_files=[from_file] if from_file is not None else [],
    )
    out.result(
        {
            "activated": report.activated,
            "already_active": report.already_active,
            "keys_activated": report.keys_activated,
        },
        f"{len(report.activated)} meter(s) confirmed ACTIVE "
        f"({report.keys_activated} keys), {len(report.already_active)} already ACTIVE",
    )
