"""Benchmark cases in fresh interpreters: ``python -m benchmarks.<name>`` from the repository
root, so that ``benchmarks`` and ``tests`` import as packages there too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The repository root: the children's working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Prefix of the lines a child reports on, among whatever else it prints on stdout.
PROTOCOL_PREFIX = "@@bench "


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs ``module`` (``benchmarks.<name>``) with ``args``."""
    return [sys.executable, "-m", module, *args]


def report(message: dict[str, Any]) -> None:
    """A child's JSON message to its parent, on one stdout line."""
    print(PROTOCOL_PREFIX + json.dumps(message), flush=True)


def read_report(line: str) -> dict[str, Any] | None:
    """The message on a line of a child's stdout, or None for any other line."""
    if not line.startswith(PROTOCOL_PREFIX):
        return None
    message: dict[str, Any] = json.loads(line[len(PROTOCOL_PREFIX) :])
    return message


def run_child(module: str, args: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    """Run ``module`` with ``args`` to the end in a fresh interpreter; its last message is its
    result. ``what`` names the child in the error raised when it fails."""
    proc = subprocess.run(
        module_command(module, *args),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} child failed with status {proc.returncode}")
    messages = [m for m in map(read_report, proc.stdout.splitlines()) if m is not None]
    if not messages:
        raise RuntimeError(f"{what} child reported nothing")
    return messages[-1]
