"""``kms audit checkpoint|verify``: the signed, hash-chained audit trail."""

from __future__ import annotations

import click

from kms.cli._context import Context, Output, command


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
