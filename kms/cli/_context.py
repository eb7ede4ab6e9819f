"""What every command shares: configuration, lazily opened token and database, and output.

Errors are turned into exit statuses in one place (:func:`run`), by the ``KMSError`` family
(:func:`kms.errors.exit_status_for`). With ``--json`` an error is printed as a JSON object on
stderr; otherwise as one ``error:`` line. Neither ever holds a PIN or a key byte: messages are
built from metadata only.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kms.config import Config, load_config
from kms.db.migrate import require_current
from kms.db.session import Database
from kms.errors import InputError, KMSError, exit_status_for
from kms.hsm import Hsm, open_hsm
from kms.services.apdu_protection import TokenApduProtection, apdu_protection_factory

T = TypeVar("T")

console = Console(stderr=False)
# soft_wrap: one error stays one line when stderr is a pipe or a log file.
err_console = Console(stderr=True, soft_wrap=True)


class Context:
    """Per-invocation state, opened on first use and closed at exit."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._hsm: Hsm | None = None
        self._db: Database | None = None
        self._apdus: TokenApduProtection | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config()
        return self._config

    def hsm(self) -> Hsm:
        if self._hsm is None:
            self._hsm = open_hsm(self.config)
        return self._hsm

    def database(self, *, migrated: bool = True) -> Database:
        if self._db is None:
            self._db = Database(self.config.database_url)
        if migrated:
            require_current(self._db.engine)
        return self._db

    def apdu_service(self) -> TokenApduProtection:
        """The APDU service of this invocation (one APDU per process: one IC reserved at a
        time); its keys serve the HLS and association commands too. Closed at exit, before the
        token session, so its keys are destroyed in the token."""
        if self._apdus is None:
            self._apdus = apdu_protection_factory(
                self.hsm(), self.database(), self.config, ic_block_size=1
            )
        return self._apdus

    def close(self) -> None:
        if self._apdus is not None:
            self._apdus.close()
        if self._hsm is not None:
            self._hsm.close()
        if self._db is not None:
            self._db.dispose()


pass_context = click.make_pass_decorator(Context, ensure=True)


def pass_owned_context(command: Callable[..., T]) -> Callable[..., T]:
    """Like :data:`pass_context`, for commands that also run on their own (the ceremony
    scripts): the Context is closed when the command ends, unless the ``kms`` group owns it."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        click_ctx = click.get_current_context()
        ctx = click_ctx.find_object(Context)
        if ctx is None:
            ctx = click_ctx.ensure_object(Context)
            click_ctx.call_on_close(ctx.close)
        return command(ctx, *args, **kwargs)

    return wrapper


def run(json_output: bool, action: Callable[[], T]) -> T:
    """Run a command body; a ``KMSError`` becomes a message and an exit status."""
    try:
        return action()
    except KMSError as exc:
        if json_output:
            print(json.dumps(exc.to_dict()), file=sys.stderr)
        else:
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        raise SystemExit(exit_status_for(exc)) from None


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout."""
    print(json.dumps(obj, indent=2, sort_keys=True))


def table(title: str, columns: list[str], rows: list[list[str]], *, fold: bool = False) -> None:
    """Print a rich table on stdout; ``fold`` wraps a long value (a path) instead of cutting it."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column, overflow="fold" if fold else "ellipsis")
    for row in rows:
        out.add_row(*row)
    console.print(out)


def parse_hex(text: str, field: str) -> bytes:
    """Bytes written in hex on the command line (whitespace ignored), or an InputError."""
    try:
        return bytes.fromhex("".join(text.split()))
    except ValueError:
        raise InputError(f"not hexadecimal: {text[:40]!r}", field=field) from None


system_title_option = click.option(
    "--system-title", required=True, help="The meter's system title (16 hex digits)."
)
setup_option = click.option(
    "--setup",
    type=click.IntRange(0, 255),
    default=0,
    show_default=True,
    help="Security setup instance e of 0.0.43.0.e.255 whose keys are used.",
)
json_option = click.option("--json", "json_output", is_flag=True, help="Print JSON for machines.")
