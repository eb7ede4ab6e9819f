"""``kms config show``: every effective setting, and where each came from.

It answers "which token, which database, which file?" before anything is touched: it reads the
configuration only (kms.toml and the PIN file included, so it refuses what every other command
would refuse), and opens neither the token nor the database. The PIN is shown as set or not set,
and a database password is masked. Like the rest of the CLI it goes through :mod:`kms.config`,
:mod:`kms.errors` and :mod:`kms.services` only.
"""

from __future__ import annotations

import click

from kms.cli._context import Context, Output, command, table
from kms.config import Setting, describe_config


@click.group("config")
def config_group() -> None:
    """The KMS's configuration (kms.toml and the environment)."""


@command(config_group, "show")
def show(ctx: Context, out: Output) -> None:
    """Show every effective setting and where it came from: kms.toml (with its path), the
    environment (with the variable) or a default. The PIN is shown only as set or not set."""
    settings = describe_config()
    out.result(
        {
            s.name: {"value": s.value, "source": s.source, "origin": s.origin, "detail": s.detail}
            for s in settings
        },
        lambda: table(
            "Configuration",
            ["setting", "value", "from"],
            [[s.name, _value(s), _source(s)] for s in settings],
        ),
    )


def _value(setting: Setting) -> str:
    if setting.value is None:
        return "-"
    if isinstance(setting.value, bool):
        return "true" if setting.value else "false"
    return str(setting.value)


def _source(setting: Setting) -> str:
    where = {"file": "kms.toml", "environment": "environment"}.get(setting.source, "default")
    if setting.origin is not None:
        where = f"{where} {setting.origin}" if setting.source != "file" else setting.origin
    return f"{where} ({setting.detail})" if setting.detail else where
