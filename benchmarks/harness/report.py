"""Progress on stderr, the options every benchmark words alike (``--json``, ``--profile``,
``--keep``), the document's common header and the console tables."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console


def log(message: str) -> None:
    """Progress on stderr, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def add_report_options(parser: argparse.ArgumentParser, profile_help: str) -> None:
    """``--json``, ``--profile`` (``profile_help`` says what it profiles) and ``--keep``,
    worded alike in every benchmark."""
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the results as JSON to PATH; without PATH, print JSON instead of the table",
    )
    parser.add_argument("--profile", metavar="DIR", help=profile_help)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


def command_line() -> str:
    """How this benchmark was run: ``python -m benchmarks.<name> <arguments>``."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    how = ["-m", spec.name] if spec is not None else [sys.argv[0]]
    return " ".join([Path(sys.executable).name, *how, *sys.argv[1:]])


def document_header() -> dict[str, Any]:
    """What every benchmark's document starts with: the command, when, and the machine."""
    return {
        "command": command_line(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "postgresql": os.environ.get("_BENCH_PG_VERSION"),
        },
    }


def emit_report(
    document: dict[str, Any], json_arg: str | None, print_tables: Callable[[dict[str, Any]], None]
) -> None:
    """What ``--json`` asks for: the document to a file (and the tables), or JSON on stdout
    instead of the tables."""
    if json_arg and json_arg != "-":
        Path(json_arg).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if json_arg == "-":
        print(json.dumps(document, indent=2))
    else:
        print_tables(document)


def report_console(width: int) -> Console:
    """A rich Console; off a terminal ``width`` wide, so a log file gets whole tables."""
    console = Console()
    return console if console.is_terminal else Console(width=width)


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or "-" for a figure not measured."""
    return "-" if value is None else format(value, spec)


def coloured(value: float | None, good: bool, spec: str) -> str:
    """``value`` formatted by ``spec``, green when ``good``, else red; "-" when not measured."""
    if value is None:
        return "-"
    colour = "green" if good else "red"
    return f"[{colour}]{value:{spec}}[/{colour}]"
