"""Provisioning throughput: the KMS against a floor of bare token calls, on SQLite and PostgreSQL.

For every size N (default 1,000, 10,000 and 100,000) the benchmark runs, one child process at a
time and in this order:

1. **floor** -- the token operations ``ProvisioningService`` does per meter (suite 0, one setup),
   made through bare python-pkcs11 calls on the same token and the same root keys, with no
   database and no KMS code: 4 AES-128 session-key generations (sensitive, extractable, the KMS's
   templates written out), 4 ``CKA_CHECK_VALUE`` reads, 4 RFC 3394 wraps under the AES-256 storage
   key, 4 HMAC-SHA256 signs under the 256-bit binding key, 1 wrap of the KEK under the 16-byte
   transport key, 3 wraps of GUEK/GBEK/GAK under the KEK and 4 destroys;
2. **kms** on each database -- a fresh database migrated to head, a manifest of N suite-0 meters
   with one setup each, and ``services.provisioning.provision(manifest, out, actor=...)``
   timed around the call (reading the manifest, the checks, every chunk and the fsync of
   ``result.jsonl`` included; migration and manifest writing excluded). The result file must have
   N lines and the database N PENDING meters, or the run fails.

Each case runs in its own child process (its own C_Login: docs/token.md section 5 allows one login
per process, and SoftHSM must not see two threads), so that ``ru_maxrss`` is the peak of that case
alone. ``SOFTHSM2_CONF`` points at a throwaway token directory before anything loads the PKCS#11
module. Before the timed cases a setup child creates the root keys and the transport key, and
counts the adapter calls of two small provisioning runs to check that the floor makes exactly the
calls the KMS makes per meter.

Targets (issue): KMS meters/s at least 60% of the floor's, and us/meter at 100,000 within 15% of
us/meter at 1,000. Nothing here is asserted by the test suite; this script only reports (its exit
status is 0 even when a target is missed, 1 when a case fails or a check does not hold).

Run ``.venv/bin/python -m benchmarks.provision --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness.children import report, run_child
from benchmarks.harness.database import DATABASES, check_postgres, postgres_database, postgres_url
from benchmarks.harness.report import (
    add_report_options,
    document_header,
    emit_report,
    log,
    report_console,
)
from benchmarks.harness.timing import Clock, dump_profile, profiler_for, timed_run
from benchmarks.harness.token import CountingHsm, softhsm_module, softhsm_token

DEFAULT_SIZES = (1000, 10000, 100000)
TRANSPORT_LABEL = "bench-transport"
TRANSPORT_VALUE = bytes.fromhex("5A17C0DE5A17C0DE5A17C0DE5A17C0DE")
STORAGE_LABEL = "kms-storage-v1"  # kms.keystore.hierarchy.STORAGE_LABEL (checked in setup)
BINDING_LABEL = "kms-binding-v1"  # kms.keystore.hierarchy.BINDING_LABEL (checked in setup)
ROLES = ("KEK", "GUEK", "GBEK", "GAK")
TARGET_FLOOR_RATIO = 0.60
TARGET_SCALING = 1.15

#: Adapter calls per meter (suite 0, one setup) that the floor reproduces, by Hsm method name.
FLOOR_CALLS = {"generate_key": 4, "check_value": 4, "wrap_key": 8, "mac": 4, "destroy": 4}

# --- small helpers ------------------------------------------------------------------------------


def system_title(case: int, index: int) -> str:
    """Unique 16-hex-digit system titles: FLAG id "BEN", then case and meter number."""
    return f"42454E{case:02X}{index:08X}"


def binding_input_length(role: str) -> int:
    """Length of kms.keystore.blobs.binding_input for a suite-0 key of ``role``.

    Six length-prefixed fields: domain (23), system title (8), logical name (6), role, version (4)
    and the blob (5-byte header + 24-byte RFC 3394 wrap of a 16-byte key).
    """
    return 6 * 2 + len(b"dlms-kms/key-binding/v1") + 8 + 6 + len(role) + 4 + 5 + 24


# --- child: setup -------------------------------------------------------------------------------


def _kms_config(spec: dict[str, Any], database_url: str) -> Any:
    from kms.config import Config, Pin

    return Config(
        pkcs11_module=spec["module"],
        token_label=spec["token_label"],
        user_pin=Pin(os.environ["KMS_USER_PIN"]),
        database_url=database_url,
        actor="benchmark",
        provision_chunk_size=spec.get("chunk_size") or Config.provision_chunk_size,
    )


def _prepare_database(hsm: Any, url: str) -> Any:
    """Migrate a fresh database, adopt the root keys and record the transport key."""
    from kms.db import Database, RootKey, RootKeyPurpose
    from kms.db import repository as repo
    from kms.db.migrate import upgrade
    from kms.hsm import TokenKey
    from kms.keystore import hierarchy

    db = Database(url)
    upgrade(db.engine)
    with db.begin() as session:
        hierarchy.initialise(hsm, session)
        if not hsm.has_token_key(TokenKey(TRANSPORT_LABEL)):
            hierarchy.create_transport_key(
                hsm, session, TRANSPORT_LABEL, TRANSPORT_VALUE, len(TRANSPORT_VALUE)
            )
        else:
            # The ceremony refuses a label the token already holds (labels are never reused), so
            # a fresh database adopts the benchmark's transport key the way `kms init` adopts
            # root keys: the same row create_transport_key writes.
            repo.add(
                session,
                RootKey(
                    label=TRANSPORT_LABEL,
                    key_id=TRANSPORT_LABEL.encode(),
                    purpose=RootKeyPurpose.TRANSPORT,
                    version=1,
                    algorithm=f"AES-{len(TRANSPORT_VALUE) * 8}",
                    check_value=hsm.check_value(TokenKey(TRANSPORT_LABEL)),
                ),
            )
    return db


def write_manifest(path: Path, case: int, count: int) -> None:
    """N suite-0 meters, one setup each (the default, setup 0)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["system_title", "suite", "initial_kek", "serial", "setups"])
        for index in range(count):
            writer.writerow([system_title(case, index), "0", TRANSPORT_LABEL, f"SN{index:08d}", ""])


def child_setup(spec: dict[str, Any]) -> dict[str, Any]:
    """Create root and transport keys; count the adapter calls a provisioning run makes."""
    from kms.keystore import hierarchy
    from kms.services.root import Resources, Services

    if (hierarchy.STORAGE_LABEL, hierarchy.BINDING_LABEL) != (STORAGE_LABEL, BINDING_LABEL):
        raise SystemExit("the KMS root key labels changed: update the benchmark's floor")
    workdir = Path(spec["workdir"])
    url = f"sqlite:///{workdir / 'setup.db'}"
    config = _kms_config(spec, url)
    hsm = CountingHsm(config)  # counts its operations by name
    try:
        db = _prepare_database(hsm, url)
        service = Services(resources=Resources(config, hsm=hsm, database=db)).provisioning
        observed: list[dict[str, int]] = []
        for case, meters in ((90, 10), (91, 30)):
            manifest = workdir / f"setup-{meters}.csv"
            write_manifest(manifest, case, meters)
            hsm.reset_counts()
            service.provision(manifest, workdir / f"setup-{meters}.jsonl", actor=config.actor)
            observed.append(dict(hsm.operations))
        db.dispose()
    finally:
        hsm.close()
    names = sorted(set(observed[0]) | set(observed[1]))
    per_meter = {n: (observed[1].get(n, 0) - observed[0].get(n, 0)) / 20 for n in names}
    fixed = {n: observed[0].get(n, 0) - 10 * per_meter[n] for n in names}
    per_meter = {n: v for n, v in per_meter.items() if v}
    fixed = {n: v for n, v in fixed.items() if v}
    return {
        "kms_calls_per_meter": per_meter,
        "kms_calls_per_run": fixed,
        "floor_calls_per_meter": FLOOR_CALLS,
        "floor_matches_kms": per_meter == {k: float(v) for k, v in FLOOR_CALLS.items()},
    }


# --- child: floor -------------------------------------------------------------------------------


def child_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The KMS's per-meter token work through bare python-pkcs11 calls, no database."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

    count = int(spec["n"])
    lib = pkcs11.lib(spec["module"])
    token = lib.get_token(token_label=spec["token_label"])
    session = token.open(rw=True, user_pin=os.environ["KMS_USER_PIN"])
    try:
        # Handles found once, as the adapter caches them (docs/token.md section 6: never search per
        # request).
        secret = ObjectClass.SECRET_KEY
        storage: Any = session.get_key(object_class=secret, label=STORAGE_LABEL)
        binding: Any = session.get_key(object_class=secret, label=BINDING_LABEL)
        transport: Any = session.get_key(object_class=secret, label=TRANSPORT_LABEL)

        # kms.hsm.templates.session_key, written out: KEK wraps, EKs encrypt, the AK does nothing.
        def template(wrap: bool, encrypt: bool) -> dict[Attribute, Any]:
            return {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.TOKEN: False,
                Attribute.PRIVATE: True,
                Attribute.ENCRYPT: encrypt,
                Attribute.DECRYPT: encrypt,
                Attribute.WRAP: wrap,
                Attribute.UNWRAP: wrap,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
                Attribute.DERIVE: False,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: True,
            }

        templates = [template(True, False), template(False, True), template(False, True)]
        templates.append(template(False, False))
        macs_in = [bytes(binding_input_length(role)) for role in ROLES]
        keygen, wrap, hmac = Mechanism.AES_KEY_GEN, Mechanism.AES_KEY_WRAP, Mechanism.SHA256_HMAC
        no_caps = MechanismFlag(0)
        sink = 0
        clock = Clock()
        for _ in range(count):
            keys: list[Any] = [
                session.generate_key(
                    KeyType.AES, 128, capabilities=no_caps, mechanism=keygen, template=t
                )
                for t in templates
            ]
            for key, data in zip(keys, macs_in, strict=True):
                sink += len(storage.wrap_key(key, mechanism=wrap))
                sink += len(binding.sign(data, mechanism=hmac))
                sink += len(key[Attribute.CHECK_VALUE])
            kek = keys[0]
            sink += len(transport.wrap_key(kek, mechanism=wrap))
            for key in keys[1:]:
                sink += len(kek.wrap_key(key, mechanism=wrap))
            for key in keys:
                key.destroy()
        timing = clock.stop()
    finally:
        session.close()
    expected = count * (4 * 24 + 4 * 32 + 4 * 3 + 24 + 3 * 24)
    if sink != expected:
        raise SystemExit(f"floor produced {sink} bytes, expected {expected}")
    return {**timing, "checks": "ok"}


# --- child: KMS ---------------------------------------------------------------------------------


def child_kms(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed ProvisioningService.provision run on a fresh database."""
    from kms.db import repository as repo
    from kms.hsm import open_hsm
    from kms.services.root import Resources, Services

    count = int(spec["n"])
    workdir = Path(spec["workdir"])
    manifest = workdir / "manifest.csv"
    out = workdir / "result.jsonl"
    write_manifest(manifest, spec["case"], count)
    config = _kms_config(spec, spec["database_url"])
    hsm = open_hsm(config)
    try:
        db = _prepare_database(hsm, spec["database_url"])
        service = Services(resources=Resources(config, hsm=hsm, database=db)).provisioning
        profiler = profiler_for(spec.get("profile"))
        result, timing = timed_run(
            db, profiler, lambda: service.provision(manifest, out, actor=config.actor)
        )
        # Checks, after the clock stopped: N result lines, N PENDING meters, N setups.
        with out.open("rb") as handle:
            first = handle.readline()
            lines = (1 if first else 0) + sum(1 for _ in handle)
        head = json.loads(first) if first else {"system_title": None, "setups": []}
        problems = []
        if lines != count:
            problems.append(f"result.jsonl has {lines} lines, expected {count}")
        if head["system_title"] != system_title(spec["case"], 0) or len(head["setups"]) != 1:
            problems.append("the first result line is not the first meter with one setup")
        elif len(head["setups"][0]["apdus"]) != 2:
            problems.append("the first meter does not have two key_transfer APDUs")
        with db.begin() as session:
            states = repo.count_meters(session)
        if states != {"PENDING": count}:
            problems.append(f"meters in the database by state: {states}, expected {count} PENDING")
        if (result.meters, result.generated, result.keys) != (count, count, 4 * count):
            problems.append(f"unexpected report {result}")
        db.dispose()
        if profiler is not None:
            dump_profile(profiler, spec["profile"], (30, 40))
    finally:
        hsm.close()
    return {
        **timing,
        "report_seconds": result.seconds,
        "result_lines": lines,
        "result_bytes": out.stat().st_size,
        "checks": "; ".join(problems) or "ok",
    }


def child_main(spec_text: str) -> None:
    spec = json.loads(spec_text)
    kind = spec["kind"]
    if kind == "setup":
        result = child_setup(spec)
    elif kind == "floor":
        result = child_floor(spec)
    elif kind == "kms":
        result = child_kms(spec)
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    report(result)


# --- parent -------------------------------------------------------------------------------------


def run_case(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run one case in a fresh interpreter (its own login, its own peak RSS)."""
    return run_child(__spec__.name, ["--child", json.dumps(spec)], env, spec["kind"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Provisioning throughput of the KMS against a bare-token floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="comma-separated meter counts; scaling is relative to the smallest",
    )
    parser.add_argument(
        "--databases", default=",".join(DATABASES), help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="SQLAlchemy URL of a PostgreSQL server whose role may CREATE DATABASE (default: "
        "$KMS_TEST_POSTGRES_URL, else `scripts/postgres-test.sh url`)",
    )
    parser.add_argument(
        "--floor-max",
        type=int,
        default=None,
        metavar="N",
        help="measure the floor at no more than N meters; larger sizes reuse the floor of the "
        "largest measured size (marked in the table)",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="provision_chunk_size (default: Config's)"
    )
    add_report_options(
        parser,
        "run the KMS cases under cProfile, write DIR/<db>-<N>.prof and print the top "
        "functions on stderr (timings are then inflated: do not compare them with the floor)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if not sizes or min(sizes) < 1:
        raise SystemExit("--sizes: positive integers, comma-separated")
    unknown = [d for d in databases if d not in DATABASES]
    if unknown:
        raise SystemExit(f"--databases: unknown {', '.join(unknown)}")
    module = softhsm_module()

    notes: list[str] = []
    pg_server: str | None = None
    if "postgresql" in databases:
        pg_server, source = postgres_url(args.postgresql)
        problem = "no URL" if pg_server is None else check_postgres(pg_server)
        if problem is not None:
            message = f"PostgreSQL skipped: {problem} ({source})"
            if args.postgresql or args.databases != ",".join(DATABASES):
                raise SystemExit(message)  # asked for by name: not silently skipped
            log(message)
            notes.append(message)
            databases = [d for d in databases if d != "postgresql"]
        else:
            log(f"PostgreSQL server from {source}")

    workdir = Path(tempfile.mkdtemp(prefix="kms-bench-provision-"))
    results: list[dict[str, Any]] = []
    setup: dict[str, Any] = {}
    status = 0
    try:
        env, token_label = softhsm_token(workdir, module)
        base = {"module": module, "token_label": token_label, "chunk_size": args.chunk_size}
        log(f"token {token_label!r} in {workdir}; setup: root keys, transport key, call count")
        setup = run_case({**base, "kind": "setup", "workdir": str(workdir)}, env)
        if not setup["floor_matches_kms"]:
            notes.append(
                "the floor does NOT make the same adapter calls per meter as the KMS: "
                f"KMS {setup['kms_calls_per_meter']}, floor {FLOOR_CALLS}"
            )
            status = 1
        floor_at: dict[int, dict[str, Any]] = {}
        for case_index, n in enumerate(sizes):
            if not args.no_floor and (args.floor_max is None or n <= args.floor_max):
                log(f"floor, N={n:,}")
                row = run_case({**base, "kind": "floor", "n": n}, env)
                row.update(database="floor", n=n)
                floor_at[n] = row
                results.append(row)
                log(f"  {row['seconds']:.1f} s, {n / row['seconds']:,.0f} meters/s")
            for database in databases:
                casedir = workdir / f"{database}-{n}"
                casedir.mkdir()
                spec = {
                    **base,
                    "kind": "kms",
                    "n": n,
                    "case": case_index,
                    "workdir": str(casedir),
                    "profile": str(Path(args.profile).resolve() / f"{database}-{n}.prof")
                    if args.profile
                    else None,
                }
                if args.profile:
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                log(f"KMS on {database}, N={n:,}")
                with contextlib.ExitStack() as stack:
                    if database == "sqlite":
                        spec["database_url"] = f"sqlite:///{casedir / 'kms.db'}"
                    else:
                        assert pg_server is not None
                        spec["database_url"] = stack.enter_context(postgres_database(pg_server))
                    row = run_case(spec, env)
                row.update(database=database, n=n)
                results.append(row)
                if row["checks"] != "ok":
                    status = 1
                log(
                    f"  {row['seconds']:.1f} s, {n / row['seconds']:,.0f} meters/s, "
                    f"checks: {row['checks']}"
                )
                shutil.rmtree(casedir, ignore_errors=True)
        derive(results, sizes, floor_at)
    except (RuntimeError, KeyboardInterrupt) as exc:
        log(f"stopped: {exc!r}")
        status = 1
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    document = {
        **document_header(),
        "chunk_size": args.chunk_size,
        "profiled": bool(args.profile),
        "targets": {"floor_ratio_min": TARGET_FLOOR_RATIO, "scaling_max": TARGET_SCALING},
        "setup": setup,
        "notes": notes,
        "results": results,
    }
    emit_report(document, args.json, print_table)
    return status


def derive(results: list[dict[str, Any]], sizes: list[int], floor_at: dict[int, Any]) -> None:
    """Per-row figures: meters/s, us/meter, ratio to the floor, scaling against the smallest N."""
    smallest = sizes[0]
    base_us: dict[str, float] = {}
    for row in results:
        n = row["n"]
        row["meters_per_s"] = n / row["seconds"]
        row["us_per_meter"] = row["seconds"] / n * 1e6
        # CPU of the benchmark process plus, on a local PostgreSQL, of the backends serving it.
        row["cpu_us_per_meter"] = (
            (row["cpu_seconds"] + row.get("db_server_cpu_seconds", 0)) / n * 1e6
        )
        row["peak_rss_mib"] = row["peak_rss"] / 2**20
        row["rss_growth_mib"] = (row["peak_rss"] - row["rss_before"]) / 2**20
        if n == smallest:
            base_us[row["database"]] = row["us_per_meter"]
    for row in results:
        base = base_us.get(row["database"])
        row["scaling"] = row["us_per_meter"] / base if base else None
        row["scaling_base_n"] = smallest
        if row["database"] == "floor":
            continue
        measured = [m for m in floor_at if m <= row["n"]]
        if not measured:
            row["floor_ratio"] = None
            continue
        floor_n = row["n"] if row["n"] in floor_at else max(measured)
        floor = floor_at[floor_n]
        row["floor_n"] = floor_n
        row["floor_ratio"] = row["meters_per_s"] / (floor_n / floor["seconds"])
        row["floor_cpu_ratio"] = floor["cpu_seconds"] / floor_n * 1e6 / row["cpu_us_per_meter"]


def print_table(document: dict[str, Any]) -> None:
    from rich.table import Table

    console = report_console(160)
    results = document["results"]
    if not results:
        console.print("[red]no results[/red]")
        return
    base_n = results[0]["scaling_base_n"]
    table = Table(
        title="Provisioning throughput (suite 0, one setup per meter)",
        caption=(
            f"floor: the same token calls through bare python-pkcs11, no DB. "
            f"Targets: KMS/floor >= {TARGET_FLOOR_RATIO:.2f}, "
            f"scaling (us/meter at N / at {base_n:,}) <= {TARGET_SCALING:.2f}"
        ),
    )
    for name, justify in (
        ("database", "left"),
        ("N", "right"),
        ("seconds", "right"),
        ("meters/s", "right"),
        ("us/meter", "right"),
        ("CPU us/meter", "right"),
        ("peak RSS MiB", "right"),
        ("RSS growth MiB", "right"),
        ("KMS/floor", "right"),
        ("KMS/floor by CPU", "right"),
        (f"scaling vs {base_n:,}", "right"),
        ("other CPU cores", "right"),
        ("checks", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in results:
        ratio = row.get("floor_ratio")
        if row["database"] == "floor" or ratio is None:
            ratio_text = "-"
        else:
            colour = "green" if ratio >= TARGET_FLOOR_RATIO else "red"
            suffix = "" if row.get("floor_n") == row["n"] else f" (floor@{row['floor_n']:,})"
            ratio_text = f"[{colour}]{ratio:.2f}[/{colour}]{suffix}"
        scaling = row.get("scaling")
        if scaling is None:
            scaling_text = "-"
        else:
            colour = "green" if scaling <= TARGET_SCALING else "red"
            scaling_text = f"[{colour}]{scaling:.3f}[/{colour}]"
        cpu_ratio = row.get("floor_cpu_ratio")
        cpu_ratio_text = "-" if cpu_ratio is None else f"{cpu_ratio:.2f}"
        other = row.get("other_cores")
        table.add_row(
            row["database"],
            f"{row['n']:,}",
            f"{row['seconds']:.2f}",
            f"{row['meters_per_s']:,.1f}",
            f"{row['us_per_meter']:,.0f}",
            f"{row['cpu_us_per_meter']:,.0f}",
            f"{row['peak_rss_mib']:.1f}",
            f"{row['rss_growth_mib']:.1f}",
            ratio_text,
            cpu_ratio_text,
            scaling_text,
            "-" if other is None else f"{other:.2f}",
            row["checks"],
        )
    console.print(table)
    setup = document.get("setup") or {}
    if setup:
        console.print(
            f"adapter calls per meter, KMS: {setup['kms_calls_per_meter']}; per run: "
            f"{setup['kms_calls_per_run']}; floor: {setup['floor_calls_per_meter']} -> "
            + ("[green]same[/green]" if setup["floor_matches_kms"] else "[red]DIFFERENT[/red]")
        )
    if document["profiled"]:
        console.print("[yellow]profiled run: KMS timings include cProfile overhead[/yellow]")
    for note in document["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"command: {document['command']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
