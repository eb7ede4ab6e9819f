"""``kms audit checkpoint|verify``: the signed, hash-chained audit trail."""

from __future__ import annotations

from typing import Any

import click

from kms.cli._context import Context, emit_json, json_option, pass_context, run
from kms.keystore import hierarchy
from kms.services.common import audit as audit_service


@click.group("audit")
def audit() -> None:
    """The audit trail of every operation on key material."""


@audit.command("checkpoint")
@json_option
@pass_context
def checkpoint(ctx: Context, json_output: bool) -> None:
    """Sign the head of the audit chain with the audit key in the token."""

    def body() -> None:
        db = ctx.database()  # the schema gate before the token login
        hsm = ctx.hsm()
        with db.begin() as session:
            root = hierarchy.load_root_keys(hsm, session)
            row = audit_service.checkpoint(hsm, session, root.audit, ctx.config.actor)
            out: dict[str, Any] = {
                "seq": row.seq,
                "head_hash": row.head_hash.hex(),
                "key": row.key_label,
            }
        if json_output:
            emit_json(out)
        else:
            click.echo(f"checkpoint signed at event {out['seq']} (head {out['head_hash'][:16]}...)")

    run(json_output, body)


@audit.command("verify")
@json_option
@pass_context
def verify(ctx: Context, json_output: bool) -> None:
    """Check the whole chain and every checkpoint signature; exit 6 on any fault."""

    def body() -> None:
        db = ctx.database()  # the schema gate before the token login
        hsm = ctx.hsm()
        with db.begin() as session:
            report = audit_service.verify(hsm, session)
        if json_output:
            emit_json({"ok": True, **report.__dict__})
        else:
            click.echo(
                f"audit chain intact: {report.events} events, {report.checkpoints} checkpoints "
                "verified"
            )

    run(json_output, body)
