"""``kms audit checkpoint|verify|list|show|export``: the signed, hash-chained audit trail."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import click

from kms.cli._context import Context, Output, command, table
from kms.errors import InputError


@click.group("audit")
def audit() -> None:
    """The audit trail of every operation on key material."""


@command(audit, "checkpoint")
def checkpoint(ctx: Context, out: Output) -> None:
    """Sign the head of the audit chain with the audit key in the token."""
    signed = ctx.services.audit.checkpoint(actor=ctx.actor)
    out.result(
        signed,
        f"checkpoint signed at event {signed['seq']} (head {signed['head_hash'][:16]}...)",
    )


@command(audit, "verify")
def verify(ctx: Context, out: Output) -> None:
    """Check the whole chain and every checkpoint signature; exit 6 on any fault."""
    report = ctx.services.audit.verify()
    out.result(
        {"ok": True, **report.__dict__},
        f"audit chain intact: {report.events} events, {report.checkpoints} checkpoints verified",
    )


def _parse_time(text: str | None) -> datetime.datetime | None:
    """An ISO 8601 time or date from the command line; without a zone it is UTC."""
    if text is None:
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            "not an ISO 8601 time (e.g. 2026-12-07 or 2026-12-07T12:00:00+01:00)", field="--from"
        ) from None
    return when.replace(tzinfo=datetime.UTC) if when.tzinfo is None else when


@command(audit, "list")
@click.option("--since", "since", type=click.IntRange(min=0), help="Only events after this seq.")
@click.option("--from", "from_time", help="Only events at or after this ISO 8601 time (UTC).")
@click.option("--operation", help="Only this operation (e.g. meter.provision).")
@click.option("--actor", help="Only events of this actor.")
@click.option("--subject", help="Only events about this subject (a system title, a label).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show the newest N matching events.",
)
def list_events(
    ctx: Context,
    out: Output,
    since: int | None,
    from_time: str | None,
    operation: str | None,
    actor: str | None,
    subject: str | None,
    limit: int,
) -> None:
    """List audit events, newest last (the newest --limit of those matching every filter).

    Reads the database only. `kms audit show --seq N` prints one event whole.
    """
    events = ctx.services.audit.events(
        after_seq=since,
        since=_parse_time(from_time),
        operation=operation,
        actor=actor,
        subject=subject,
        limit=limit,
    )
    out.result(
        events,
        lambda: table(
            f"Audit events ({len(events)})",
            ["seq", "time", "actor", "operation", "subject", "outcome"],
            [
                [
                    str(e["seq"]),
                    _short_time(e["occurred_at"]),
                    e["actor"],
                    e["operation"],
                    e["subject"],
                    e["outcome"],
                ]
                for e in events
            ],
        ),
    )


def _short_time(text: str) -> str:
    """A table's time: to the second, UTC (--json and `show` keep the microseconds)."""
    return text[:19] + "Z" if text.endswith("+00:00") else text


def _show_text(event: dict[str, Any]) -> None:
    """One field a line, nothing folded or cut: hashes and subjects stay whole to copy."""
    cp = event["checkpoint"]
    covered = (
        f"checkpoint {cp['id']} at event {cp['seq']}, signed {cp['signed_at']} with "
        f"{cp['key_label']} (head {cp['head_hash']})"
        if cp is not None
        else "no checkpoint yet (run `kms audit checkpoint`)"
    )
    details = json.dumps(event["details"], indent=2, sort_keys=True).replace("\n", "\n" + " " * 15)
    for name, value in [
        ("seq", str(event["seq"])),
        ("time", event["occurred_at"]),
        ("actor", event["actor"]),
        ("operation", event["operation"]),
        ("subject", event["subject"]),
        ("outcome", event["outcome"]),
        ("previous hash", event["prev_hash"]),
        ("hash", event["hash"]),
        ("covered by", covered),
        ("details", details),
    ]:
        click.echo(f"{name + ':':<15}{value}")


@command(audit, "show")
@click.option("--seq", type=click.IntRange(min=1), required=True, help="The event's seq.")
def show(ctx: Context, out: Output, seq: int) -> None:
    """Show one audit event whole: details, hashes and the checkpoint that covers it."""
    event = ctx.services.audit.event(seq)
    out.result(event, lambda: _show_text(event))


@command(audit, "export")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The JSON Lines file to write (schema/formats/audit-export-line.schema.json).",
)
@click.option("--since", type=click.IntRange(min=0), default=0, help="Only events after this seq.")
@click.option("--force", is_flag=True, help="Replace --out if it exists (atomically).")
def export(ctx: Context, out: Output, out_path: Path, since: int, force: bool) -> None:
    """Export events and checkpoints as JSON Lines, checkable offline.

    Each checkpoint line carries the audit key's public key, so
    `scripts/verify_audit_export.py FILE` recomputes every hash and checks every signature from
    the file alone. The file is written whole or not at all; an existing file is refused unless
    --force (an export is evidence: an earlier one is never replaced by accident).
    """
    summary = ctx.services.audit.export(out_path, since=since, force=force)
    out.result(
        summary,
        f"exported {summary['events']} events and {summary['checkpoints']} checkpoints "
        f"to {summary['path']}",
    )
