"""What every command shares: the invocation's services (one :class:`~kms.services.root.Services`,
the composition root, which opens the token and the database only when a command needs them),
the one command decorator (:func:`command`), and output (:class:`Output`, tables, JSON).

Errors are turned into exit statuses in one place (:func:`run`), by the ``KMSError`` family
(:func:`kms.errors.exit_status_for`). With ``--json`` an error is printed as a JSON object on
stderr; otherwise as one ``error:`` line. Neither ever holds a PIN or a key byte: messages are
built from metadata only.
"""

from __future__ import annotations

import dataclasses
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
from kms.errors import InputError, KMSError, exit_status_for
from kms.services.root import Services

T = TypeVar("T")

#: Piped into a file or another program, a table is as wide as its content (rich would otherwise
#: squeeze it into 80 columns and cut the identifiers a reader copies from it).
console = Console(stderr=False, width=None if sys.stdout.isatty() else 4096)
# soft_wrap: one error stays one line when stderr is a pipe or a log file.
err_console = Console(stderr=True, soft_wrap=True)


class Context:
    """Per-invocation state: the process's services (:class:`kms.services.root.Services`),
    built on first use and closed at exit."""

    def __init__(self) -> None:
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        """The composition root of this invocation (reads the configuration on first use).

        One command protects one APDU, so the head-end's services reserve exactly one invocation
        counter at a time (``ic_block_size`` 1) rather than the configured block."""
        if self._services is None:
            self._services = Services(dataclasses.replace(load_config(), ic_block_size=1))
        return self._services

    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def actor(self) -> str:
        """Who acts in this invocation, for the audit trail (``KMS_ACTOR`` or the OS user)."""
        return self.config.actor

    def close(self) -> None:
        if self._services is not None:
            self._services.close()


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


class Output:
    """Where a command's result goes: one JSON document on stdout with ``--json``, else text
    or a table for a person."""

    def __init__(self, json_output: bool) -> None:
        self.json = json_output

    def result(self, data: Any, text: str | Callable[[], None] | None = None) -> None:
        """Print ``data`` as JSON, or else ``text`` (a line, or a function that prints)."""
        if self.json:
            emit_json(data)
        elif callable(text):
            text()
        elif text is not None:
            click.echo(text)


def command(
    group: click.Group | None, name: str | None = None, **attrs: Any
) -> Callable[[Callable[..., None]], click.Command]:
    """A ``kms`` subcommand of ``group`` (``None``: a command of its own, which
    :mod:`kms.cli.main` adds to ``kms``): adds ``--json``, hands the function the invocation's
    :class:`Context` and an :class:`Output`, and maps a ``KMSError`` to its message and exit
    status in one place (:func:`run`). The function is ``f(ctx, out, **options)``.

    A command that also runs on its own (a ceremony script calls it as a click command) gets a
    Context of its own, closed when the command ends."""

    def decorate(function: Callable[..., None]) -> click.Command:
        @functools.wraps(function)
        def invoke(*args: Any, json_output: bool, **kwargs: Any) -> None:
            click_ctx = click.get_current_context()
            ctx = click_ctx.find_object(Context)
            if ctx is None:
                ctx = click_ctx.ensure_object(Context)
                click_ctx.call_on_close(ctx.close)
            run(json_output, lambda: function(ctx, Output(json_output), *args, **kwargs))

        # --json after the command's own options in --help, as json_option used to put it (click
        # lists a function's __click_params__ in reverse).
        flag = click.Option(["--json", "json_output"], is_flag=True, help=JSON_HELP)
        setattr(invoke, "__click_params__", [flag, *getattr(function, "__click_params__", [])])  # noqa: B010
        make = click.command if group is None else group.command
        return make(name, **attrs)(invoke)

    return decorate


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout."""
    print(json.dumps(obj, indent=2, sort_keys=True))


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a rich table on stdout. No value is ever cut: on a narrow terminal a long one (a
    serial, a label, a path) wraps onto the next line; piped, the table takes the width it
    needs."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column, overflow="fold")
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
JSON_HELP = "Print JSON for machines."
json_option = click.option("--json", "json_output", is_flag=True, help=JSON_HELP)
