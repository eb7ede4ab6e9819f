"""End-to-end demonstration on a development token: ``make demo`` runs this.

1. A development SoftHSM2 token under ./var/ with its own softhsm2.conf (never the system token
   directory), its PINs in ./var/ (development only: a production PIN lives in a protected file
   or comes from the operator).
2. ``kms init`` (root keys) and ``kms selftest`` (known-answer tests in the token).
3. Two demo vendor transport keys (AES-128 for suites 0 and 1, AES-256 for suite 2), imported
   once through the ``kms transport-key import`` ceremony; their hex files stay in ./var/ so the
   simulated meters can start from them.
4. ``kms provision`` of 1,000 meters, suites 0, 1 and 2 mixed, with fresh system titles each run
   (so running the demo twice provisions a second batch into the same database).
5. Every meter's key_transfer APDUs applied to the independent simulated meter of
   tests/interop/meter.py (pyca/cryptography only), whose resulting check values must equal those
   the KMS reported; then ``kms provision confirm``, ``kms audit checkpoint`` and ``verify``.
6. A summary table: meters, keys, seconds, meters/s.

Run from the repository root: ``.venv/bin/python scripts/demo.py [--meters N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kms.dlms.obis import parse_logical_name  # noqa: E402
from tests.interop.meter import SimulatedMeter  # noqa: E402
from tests.softhsm import write_softhsm2_conf  # noqa: E402  (the meter nobody here wrote keys for)

VAR = ROOT / "var"
TOKEN_LABEL = "kms-dev"  # noqa: S105 (a label, not a secret)
MODULE = os.environ.get("KMS_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
VENDOR_KEYS = {"demo-vendor-aes128": 16, "demo-vendor-aes256": 32}
console = Console()


def _environment() -> dict[str, str]:
    conf = write_softhsm2_conf(VAR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    env["SOFTHSM2_CONF"] = str(conf)
    env["KMS_CONFIG"] = str(VAR / "kms.toml")
    return env


def _ensure_token(env: dict[str, str]) -> None:
    slots = subprocess.run(
        ["softhsm2-util", "--show-slots"], env=env, capture_output=True, text=True, check=True
    ).stdout
    pin_file = VAR / "dev-user.pin"
    if f"Label:            {TOKEN_LABEL}" in slots:
        if pin_file.exists():
            return
        raise SystemExit(
            f"the development token {TOKEN_LABEL!r} exists but {pin_file} is gone: "
            f"remove {VAR} to start afresh"
        )
    user_pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    # softhsm2-util takes PINs as arguments or at a terminal prompt only: acceptable for this
    # throwaway development token, never for a production one (initialised at the HSM's console).
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
         "--pin", user_pin, "--so-pin", so_pin],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name, pin in (("dev-user.pin", user_pin), ("dev-so.pin", so_pin)):
        _write_private(VAR / name, pin + "\n")
    (VAR / "kms.db").unlink(missing_ok=True)  # a new token means a new key store


def _write_private(path: Path, text: str) -> None:
    """Create a file readable by its owner only from the start (no window with wider modes)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _write_config() -> None:
    (VAR / "kms.toml").write_text(
        "[kms]\n"
        f'pkcs11_module = "{MODULE}"\n'
        f'token_label = "{TOKEN_LABEL}"\n'
        f'user_pin_file = "{VAR / "dev-user.pin"}"\n'
        f'database_url = "sqlite:///{VAR / "kms.db"}"\n'
        'actor = "demo"\n'
    )


def kms(env: dict[str, str], *args: str) -> dict[str, object] | list[object]:
    """Run one ``kms`` command with ``--json``; stop the demo with its message on failure."""
    exe = Path(sys.executable).parent / "kms"
    result = subprocess.run([str(exe), *args, "--json"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        console.print(f"[red]kms {' '.join(args)} failed ({result.returncode}):[/] {result.stderr}")
        raise SystemExit(result.returncode)
    parsed: dict[str, object] | list[object] = json.loads(result.stdout)
    return parsed


def _ensure_vendor_keys(env: dict[str, str]) -> dict[str, bytes]:
    listed = kms(env, "transport-key", "list")
    present = {str(k["label"]) for k in listed if isinstance(k, dict)}
    values = {}
    for label, length in VENDOR_KEYS.items():
        path = VAR / f"{label}.hex"
        if label not in present:
            _write_private(path, secrets.token_hex(length).upper() + "\n")
            kms(env, "transport-key", "import", "--label", label, "--key-file", str(path))
        values[label] = bytes.fromhex(path.read_text().strip())
    return values


def _manifest(path: Path, meters: int) -> list[tuple[bytes, int]]:
    rows, seen = [], set()
    while len(rows) < meters:
        title = b"MMM" + secrets.token_bytes(5)
        if title in seen:
            continue
        seen.add(title)
        rows.append((title, len(rows) % 3))
    with path.open("w") as handle:
        handle.write("system_title,suite,initial_kek,serial\n")
        for number, (title, suite) in enumerate(rows, start=1):
            label = "demo-vendor-aes256" if suite == 2 else "demo-vendor-aes128"
            handle.write(f"{title.hex().upper()},{suite},{label},DEMO{number:06d}\n")
    return rows


def _check_meters(result: Path, vendor: dict[str, bytes]) -> int:
    checked = 0
    for line in result.read_text().splitlines():
        obj = json.loads(line)
        suite = int(obj["suite"])
        initial = vendor["demo-vendor-aes256" if suite == 2 else "demo-vendor-aes128"]
        meter = SimulatedMeter(bytes.fromhex(obj["system_title"]), suite, initial)
        for setup in obj["setups"]:
            for apdu in setup["apdus"]:
                response = meter.apply(bytes.fromhex(apdu))
                if response[-2:] != b"\x00\x00":
                    raise SystemExit(f"meter {obj['system_title']} refused an APDU")
            ln = parse_logical_name(setup["logical_name"])
            if meter.check_values(ln) != setup["kcv"]:
                raise SystemExit(f"meter {obj['system_title']}: check values differ from the KMS's")
        checked += 1
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000, help="meters to provision (1000)")
    args = parser.parse_args()
    if shutil.which("softhsm2-util") is None:
        raise SystemExit("softhsm2-util not found: run `make deps` (Debian package softhsm2)")
    VAR.mkdir(exist_ok=True)
    env = _environment()
    _ensure_token(env)
    _write_config()
    kms(env, "init")
    selftest = kms(env, "selftest")
    assert isinstance(selftest, dict) and selftest["passed"] is True
    vendor = _ensure_vendor_keys(env)

    stamp = time.strftime("%Y%m%dT%H%M%S")
    batch = VAR / "demo"
    batch.mkdir(exist_ok=True)
    manifest, result = batch / f"manifest-{stamp}.csv", batch / f"result-{stamp}.jsonl"
    _manifest(manifest, args.meters)
    started = time.perf_counter()
    summary = kms(env, "provision", "--manifest", str(manifest), "--out", str(result))
    assert isinstance(summary, dict)
    checked = _check_meters(result, vendor)
    kms(env, "provision", "confirm", "--from", str(result))
    kms(env, "audit", "checkpoint")
    audit = kms(env, "audit", "verify")
    total = time.perf_counter() - started

    table = Table(title="make demo: factory provisioning on a development token")
    for column in ("meters", "keys", "provision s", "meters/s", "meters checked", "audit events",
                   "total s"):  # fmt: skip
        table.add_column(column, justify="right")
    assert isinstance(audit, dict)
    table.add_row(
        str(summary["meters"]), str(summary["keys"]), f"{summary['seconds']:.2f}",
        f"{summary['meters_per_second']:.0f}", f"{checked} / {summary['meters']}",
        str(audit["events"]), f"{total:.2f}",
    )  # fmt: skip
    console.print(table)
    console.print(f"manifest {manifest}\nresult   {result}\ndatabase {VAR / 'kms.db'}")


if __name__ == "__main__":
    main()
