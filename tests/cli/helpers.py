"""Running the ``kms`` command as a black box: subprocesses, their output, and the database.

The command is the ``kms`` console script installed beside the interpreter running the tests
(``.venv/bin/kms``). Every call gets the test's environment (``kms_env``) and working directory
(``tmp_path``) and is recorded by :class:`Cli`, so a test can later search everything the command
printed. Output is decoded as UTF-8 with ``surrogateescape``: stray bytes survive and
:func:`raw_output` gives them back exactly.

What the database holds is read with SQLAlchemy straight from ``KMS_DATABASE_URL`` (every table,
every row, reflected), never through the KMS, so a test sees what is really stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.pool import NullPool

from tests.kms_fixtures import TRANSPORT_KEYS

KMS = Path(sys.executable).parent / "kms"
TIMEOUT = 120

Proc = subprocess.CompletedProcess[str]


def _argv(args: Sequence[str | Path]) -> list[str]:
    return [str(KMS), *(str(a) for a in args)]


def run(args: Sequence[str | Path], env: dict[str, str], cwd: Path) -> Proc:
    """Run ``kms *args`` and wait for it; never raises on a non-zero exit status."""
    return subprocess.run(
        _argv(args),
        env=env,
        cwd=cwd,
        capture_output=True,
        encoding="utf-8",
        errors="surrogateescape",
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
        check=False,
    )


def run_many(argvs: Sequence[Sequence[str | Path]], env: dict[str, str], cwd: Path) -> list[Proc]:
    """Run several ``kms`` commands at once.

    Only for commands that never open the token (``--help``, ``meter``, ``transport-key list``,
    a request refused before the token is opened): two processes opening one SoftHSM2 token at the
    same instant sometimes fail with "no token labelled ..." (exit 4).
    """
    procs = [
        subprocess.Popen(
            _argv(args),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            encoding="utf-8",
            errors="surrogateescape",
        )
        for args in argvs
    ]
    results = []
    for args, proc in zip(argvs, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(_argv(args), proc.returncode, stdout, stderr))
    return results


def describe(proc: Proc) -> str:
    """A command, its status and its output, for an assertion message."""
    command = " ".join(proc.args[1:]) if isinstance(proc.args, list) else str(proc.args)
    return (
        f"`kms {command}` exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


def one_line(text: str) -> str:
    """``text`` with every run of whitespace made one space (rich wraps long error lines)."""
    return " ".join(text.split())


def raw_output(proc: Proc) -> bytes:
    """stdout and stderr as the bytes the process wrote."""
    return (proc.stdout + proc.stderr).encode("utf-8", "surrogateescape")


def stdout_json(proc: Proc) -> Any:
    """The JSON document a successful ``--json`` command printed."""
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout)


def stderr_json(proc: Proc) -> dict[str, Any]:
    """The JSON error object a failed ``--json`` command printed on stderr."""
    assert proc.returncode != 0, describe(proc)
    try:
        obj = json.loads(proc.stderr)
    except json.JSONDecodeError as exc:  # pragma: no cover - a failure message
        raise AssertionError(f"stderr is not one JSON document ({exc})\n{describe(proc)}") from None
    assert isinstance(obj, dict), describe(proc)
    assert isinstance(obj.get("error"), str) and obj["error"], describe(proc)
    assert isinstance(obj.get("message"), str) and obj["message"], describe(proc)
    return obj


def read_jsonl(path: Path) -> list[Any]:
    """Every line of a JSON-lines file, parsed."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class Cli:
    """The ``kms`` command bound to one test's environment and directory; remembers every run."""

    env: dict[str, str]
    cwd: Path
    runs: list[Proc] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.env["KMS_DATABASE_URL"]

    def __call__(self, *args: str | Path, env: dict[str, str] | None = None) -> Proc:
        proc = run(args, {**self.env, **(env or {})}, self.cwd)
        self.runs.append(proc)
        return proc

    def ok(self, *args: str | Path) -> Proc:
        """Run a command that must succeed."""
        proc = self(*args)
        assert proc.returncode == 0, describe(proc)
        return proc

    def json(self, *args: str | Path) -> Any:
        """Run a command with ``--json`` that must succeed; its parsed stdout."""
        return stdout_json(self.ok(*args, "--json"))

    def many(self, *argvs: Sequence[str | Path], env: dict[str, str] | None = None) -> list[Proc]:
        """Run commands concurrently (see :func:`run_many`)."""
        procs = run_many(argvs, {**self.env, **(env or {})}, self.cwd)
        self.runs.extend(procs)
        return procs


# --- setting a KMS up --------------------------------------------------------------------------


def write_key_file(directory: Path, label: str, value: bytes) -> Path:
    """A transport key file holding ``value`` in hex, as a vendor ships it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{label}.hex"
    path.write_text(value.hex().upper() + "\n", encoding="ascii")
    return path


def initialised_kms(cli: Cli, labels: Iterable[str] = tuple(TRANSPORT_KEYS)) -> dict[str, Path]:
    """``kms init``, then import the named transport keys of :data:`TRANSPORT_KEYS` from key
    files under ``keys/``; returns the key files by label."""
    cli.ok("init")
    files = {}
    for label in labels:
        files[label] = write_key_file(cli.cwd / "keys", label, TRANSPORT_KEYS[label])
        cli.ok("transport-key", "import", "--label", label, "--key-file", files[label])
    return files


def write_text(path: Path, text: str) -> Path:
    """Write a file (a hand-made manifest) exactly as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- what the database holds -------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return value.tobytes()
    return value


def dump_database(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row (column -> value) of every table (reflected), in a stable order; ``{}`` for a
    database without tables."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        out: dict[str, list[dict[str, Any]]] = {}
        with engine.connect() as conn:
            for name, table in sorted(metadata.tables.items()):
                rows = [
                    {column: _plain(value) for column, value in row._mapping.items()}
                    for row in conn.execute(select(table))
                ]
                out[name] = sorted(rows, key=repr)
        return out
    finally:
        engine.dispose()


def value_bytes(value: Any) -> bytes:
    """A stored value as bytes to search: binary as is, anything else as its text."""
    value = _plain(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str).encode()
    return str(value).encode("utf-8", "surrogateescape")
