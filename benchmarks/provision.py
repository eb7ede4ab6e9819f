#!/usr/bin/env python3
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

Run ``.venv/bin/python benchmarks/provision.py --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_SIZES = (1000, 10000, 100000)
DATABASES = ("sqlite", "postgresql")
TOKEN_LABEL = "kms-bench"
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


def log(message: str) -> None:
    """Progress on stderr, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> float | None:
    """Machine-wide non-idle CPU seconds since boot (/proc/stat), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Wall time, this process's CPU and the rest of the machine's CPU over a timed section.

    ``other_cores`` is the CPU the rest of the machine burnt per second of the section: the
    PostgreSQL server's work on a PostgreSQL run, and whatever else runs on the machine (noise).
    """

    def __init__(self) -> None:
        self.rss_before = peak_rss_bytes()
        self._busy = busy_cpu_seconds()
        self._cpu = cpu_seconds()
        self._started = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self._started
        cpu = cpu_seconds() - self._cpu
        busy = busy_cpu_seconds()
        other = None
        if busy is not None and self._busy is not None and seconds > 0:
            other = max(0.0, (busy - self._busy - cpu) / seconds)
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "other_cores": other,
            "rss_before": self.rss_before,
            "peak_rss": peak_rss_bytes(),
        }


def backend_cpu_seconds(db: Any) -> dict[int, float] | None:
    """CPU seconds used so far by each PostgreSQL backend serving this database, by pid.

    Read from /proc/<pid>/stat, so only for a server on this machine (None otherwise, and for
    SQLite, whose work is in the benchmark's own process).
    """
    from sqlalchemy import text

    if db.engine.dialect.name != "postgresql":
        return None
    with db.engine.connect() as conn:
        pids = list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ).scalars()
        )
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None  # not a local server, or not ours to read
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return out


def timed_run(db: Any, profiler: Any, call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """``call()`` under a :class:`Clock` (and ``profiler``, when not None): its result and the
    timing, with the PostgreSQL backends' CPU counted as the database's share
    (``db_server_cpu_seconds``) and taken out of ``other_cores``. Backends opened during the run
    count from zero."""
    backends_before = backend_cpu_seconds(db)
    clock = Clock()
    if profiler is not None:
        profiler.enable()
    result = call()
    if profiler is not None:
        profiler.disable()
    timing = clock.stop()
    backends_after = backend_cpu_seconds(db)
    if backends_before is not None and backends_after is not None:
        db_cpu = sum(t - backends_before.get(p, 0.0) for p, t in backends_after.items())
        timing["db_server_cpu_seconds"] = db_cpu
        if timing["other_cores"] is not None:
            timing["other_cores"] = max(0.0, timing["other_cores"] - db_cpu / timing["seconds"])
    return result, timing


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
    from kms.hsm import open_hsm
    from kms.keystore import hierarchy
    from kms.services.root import Resources, Services

    if (hierarchy.STORAGE_LABEL, hierarchy.BINDING_LABEL) != (STORAGE_LABEL, BINDING_LABEL):
        raise SystemExit("the KMS root key labels changed: update the benchmark's floor")
    workdir = Path(spec["workdir"])
    url = f"sqlite:///{workdir / 'setup.db'}"
    config = _kms_config(spec, url)
    hsm = open_hsm(config)
    try:
        db = _prepare_database(hsm, url)
        counts: dict[str, int] = {}
        for name in [n for n in dir(hsm) if not n.startswith("_")]:
            method = getattr(hsm, name)
            if not callable(method) or name in {"close", "mechanisms"}:
                continue

            def counted(*args: Any, _name: str = name, _m: Any = method, **kw: Any) -> Any:
                counts[_name] = counts.get(_name, 0) + 1
                return _m(*args, **kw)

            setattr(hsm, name, counted)
        service = Services(resources=Resources(config, hsm=hsm, database=db)).provisioning
        observed: list[dict[str, int]] = []
        for case, meters in ((90, 10), (91, 30)):
            manifest = workdir / f"setup-{meters}.csv"
            write_manifest(manifest, case, meters)
            counts.clear()
            service.provision(manifest, workdir / f"setup-{meters}.jsonl", actor=config.actor)
            observed.append(dict(counts))
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
        profiler: Any = None
        if spec.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
        report, timing = timed_run(
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
        if (report.meters, report.generated, report.keys) != (count, count, 4 * count):
            problems.append(f"unexpected report {report}")
        db.dispose()
        if profiler is not None:
            import pstats

            profiler.dump_stats(spec["profile"])
            stats = pstats.Stats(spec["profile"], stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)
    finally:
        hsm.close()
    return {
        **timing,
        "report_seconds": report.seconds,
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
    print(json.dumps(result), flush=True)


# --- parent -------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run one case in a fresh interpreter; its last stdout line is its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, text=True, check=False, cwd=REPO_ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['kind']} child failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def softhsm_token(workdir: Path, module: str) -> tuple[dict[str, str], str]:
    """A throwaway SoftHSM2 token; returns the children's environment and the token label."""
    from tests.softhsm import write_softhsm2_conf

    conf = write_softhsm2_conf(workdir)
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before anything in any process loads the module
    pin = secrets.token_hex(8)
    result = subprocess.run(
        [
            "softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
            "--pin", pin, "--so-pin", secrets.token_hex(8), "--module", module,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    env.update({"SOFTHSM2_CONF": str(conf), "KMS_USER_PIN": pin, "PYTHONHASHSEED": "0"})
    return env, TOKEN_LABEL


def postgres_url(explicit: str | None) -> tuple[str | None, str]:
    """The server URL to create databases on, and where it came from."""
    if explicit:
        return explicit, "--postgresql"
    if os.environ.get("KMS_TEST_POSTGRES_URL"):
        return os.environ["KMS_TEST_POSTGRES_URL"], "KMS_TEST_POSTGRES_URL"
    script = REPO_ROOT / "scripts" / "postgres-test.sh"
    try:
        proc = subprocess.run(
            [str(script), "url"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, "scripts/postgres-test.sh url could not run"
    if proc.returncode != 0 or not proc.stdout.strip():
        return None, f"scripts/postgres-test.sh url: {proc.stderr.strip() or 'no URL'}"
    return proc.stdout.strip(), "scripts/postgres-test.sh url"


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


def report_console(width: int) -> Any:
    """A rich Console; off a terminal ``width`` wide, so a log file gets whole tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=width)


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or "-" for a figure not measured."""
    return "-" if value is None else format(value, spec)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """CREATE DATABASE kms_bench_<hex> on the server; DROP it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from tests.postgres import drop_database

    name = f"kms_bench_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.dispose()
        drop_database(server_url, name)


def check_postgres(server_url: str) -> str | None:
    """None when the server accepts us and lets us create databases, else why not."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    try:
        engine = create_engine(server_url, poolclass=NullPool)
        with engine.connect() as conn:
            can = conn.execute(
                text("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar()
            version = conn.execute(text("SHOW server_version")).scalar()
        engine.dispose()
    except SQLAlchemyError as exc:
        return f"cannot connect: {exc.__class__.__name__}"
    if not can:
        return "the role may not CREATE DATABASE"
    os.environ["_BENCH_PG_VERSION"] = str(version)
    return None


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
    module = os.environ.get("KMS_PKCS11_MODULE") or DEFAULT_MODULE
    if "softhsm" not in Path(module).name.lower() or shutil.which("softhsm2-util") is None:
        raise SystemExit(f"needs SoftHSM2 (softhsm2-util and {module}): it initialises a token")

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
        setup = run_child({**base, "kind": "setup", "workdir": str(workdir)}, env)
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
                row = run_child({**base, "kind": "floor", "n": n}, env)
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
                    row = run_child(spec, env)
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
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "postgresql": os.environ.get("_BENCH_PG_VERSION"),
        },
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
