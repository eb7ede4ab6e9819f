"""APDU protection throughput: the KMS against a bare-token floor and pyca, in 1 and 2 processes.

For each security suite (0: SC 0x30, AES-128; 2: SC 0x32, AES-256) and APDU size (13 bytes, a
GET request; 1 KiB) the benchmark measures operations per second of, in this order:

1. **pyca encrypt** -- ``AESGCM.encrypt`` in process, the same IV, AAD and plaintext shapes: what
   this host can do without a token (1 process);
2. **token encrypt (floor)** -- a bare python-pkcs11 loop on the same token: ``key.encrypt`` with
   ``CKM_AES_GCM``, ``GCMParams(iv, SC || AK, 96)`` and a new IV per operation, under an AES key
   of the suite's length held as a session object with the KMS's EK_FOR_USE template (sensitive,
   not extractable); no database, no KMS code (1 and 2 processes);
3. **KMS protect** -- ``apdu_protection_factory(hsm, db, config).protect(meter, apdu, sc,
   actor=...)`` with the configured ``ic_block_size`` (1 and 2 processes, each its own meter);
4. **pyca decrypt**, **token decrypt (floor)** and **KMS verify** -- the same for the receiving
   side; the KMS verifies glo-get-responses that pyca ciphered as the meter would (the meter's
   keys learnt by a simulated meter from the provisioning result's key_transfer APDUs, as the
   tests do), with strictly increasing invocation counters.

Each process count is measured right after the other, and each KMS measurement right after its
floor, so that they see about the same machine. Two-process figures are the sum of two worker
processes started at the same instant (a shared wall-clock start time), each with its own login
and database connection: docs/token.md section 4 (one lock per process, parallelism by processes).

The workers are long-lived children of this script (``--worker``), two for the floor and pyca
(bare python-pkcs11) and two for the KMS (``kms.hsm.open_hsm`` and ``kms.db.Database`` from the
KMS environment, ``KMS_*``); the parent sends them one JSON command per line and never touches
the token. ``SOFTHSM2_CONF`` points at a throwaway token before anything loads the module. A
setup child creates the root keys and two transport keys, provisions and confirms the meters,
and counts the token calls and database commits per APDU on a meter of its own.

Every database commit of the KMS worker is counted by a SQLAlchemy ``commit`` event listener on
its engine. Targets (issue 4 section 7; reported, never asserted): protect at >= 85% of the
floor's operations per second, at most one commit per 1,000 protected APDUs, and 2 processes at
>= 1.6 times one. Verify commits once per APDU by design: the receive floor is persisted before
the plaintext is released (kms.keystore.counters).

Run ``.venv/bin/python -m benchmarks.apdu --help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from benchmarks.harness.children import REPO_ROOT, module_command, read_report, report, run_child
from benchmarks.harness.database import (
    DATABASES,
    backend_cpu_seconds,
    backends_used,
    postgres_database,
    require_postgres,
)
from benchmarks.harness.report import (
    add_report_options,
    coloured,
    document_header,
    emit_report,
    fmt,
    log,
    report_console,
)
from benchmarks.harness.timing import busy_cpu_seconds, cpu_seconds, dump_profile
from benchmarks.harness.token import CountingHsm, softhsm_module, softhsm_token

DEFAULT_SUITES = (0, 2)
DEFAULT_SIZES = (13, 1024)
DEFAULT_SECONDS = 2.0
#: The head-end's system title (KMS_CLIENT_SYSTEM_TITLE): FLAG id "KMS".
CLIENT_SYSTEM_TITLE = "4B4D5300000000B1"
#: Transport keys of known value, one per key length, so the simulated meter can start from them.
TRANSPORT_KEYS = {
    0: ("bench-transport-128", bytes.fromhex("5A17C0DE5A17C0DE5A17C0DE5A17C0DE")),
    2: ("bench-transport-256", bytes.fromhex("C0FFEE00" * 8)),
}
KEY_LENGTH = {0: 16, 2: 32}
#: Authenticated and encrypted (SC 0x30 | suite).
SC_AUTH_ENC = 0x30
#: A GET request (invoke-id 0x01, class 8, 0.0.1.0.0.255, attribute 2): 13 bytes.
GET_REQUEST = bytes.fromhex("C0010000080000010000FF0200")
#: A get-response of 13 bytes (an octet string of 7), the plain APDU of the meter's answers.
GET_RESPONSE = bytes.fromhex("C401C100090707E60B1D071622")
GLO_GET_RESPONSE = 0xCC
TAG_LENGTH = 12
#: Operations between two looks at the clock in a timed loop.
BATCH = 16
#: The setup child's exact count: protect this many APDUs on a meter of its own.
SETUP_PROTECTS = 10_000
SETUP_VERIFIES = 50

TARGET_FLOOR_RATIO = 0.85
TARGET_SCALING = 1.6
TARGET_COMMITS_PER_1000 = 1.0

#: What each measurement is, in the order they run for one suite and size, with process counts.
SCHEDULE: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("pyca-encrypt", (1,)),
    ("token-encrypt", (1, 2)),
    ("protect", (1, 2)),
    ("pyca-decrypt", (1,)),
    ("token-decrypt", (1, 2)),
    ("verify", (1, 2)),
)
LABELS = {
    "pyca-encrypt": "pyca encrypt (host)",
    "token-encrypt": "token encrypt (floor)",
    "protect": "KMS protect",
    "pyca-decrypt": "pyca decrypt (host)",
    "token-decrypt": "token decrypt (floor)",
    "verify": "KMS verify",
}
#: The KMS operation -> its floor and its host baseline.
FLOOR_OF = {"protect": "token-encrypt", "verify": "token-decrypt"}
HOST_OF = {
    "protect": "pyca-encrypt",
    "token-encrypt": "pyca-encrypt",
    "verify": "pyca-decrypt",
    "token-decrypt": "pyca-decrypt",
}


# --- APDUs, the same in every process ------------------------------------------------------------


def plain_request(size: int) -> bytes:
    """A plain APDU of ``size`` bytes to protect: the GET request, or a set-request (0xC1) whose
    octet string fills it to ``size`` (the KMS parses only the tag, which must have a glo- form).
    """
    if size == len(GET_REQUEST):
        return GET_REQUEST
    head = bytes.fromhex("C101C1000100002B0000FF0200") + b"\x09\x82" + (size - 17).to_bytes(2)
    return (head + bytes(range(256)) * (size // 256 + 1))[:size]


def plain_response(size: int) -> bytes:
    """A plain get-response of ``size`` bytes, as the meter sends back (before ciphering)."""
    if size == len(GET_RESPONSE):
        return GET_RESPONSE
    head = bytes.fromhex("C401C10009") + b"\x82" + (size - 8).to_bytes(2)
    return (head + bytes(range(255, -1, -1)) * (size // 256 + 1))[:size]


def ber_length(n: int) -> bytes:
    """A-XDR length: one byte below 0x80, else 0x81 / 0x82 and the value."""
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return b"\x81" + n.to_bytes(1)
    return b"\x82" + n.to_bytes(2)


def read_ber_length(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    return int.from_bytes(data[offset + 1 : offset + 1 + size]), offset + 1 + size


def meter_title(suite: int, index: int) -> str:
    """Unique meter system titles: FLAG id "BEN", 0xA0 + suite, then the worker's index."""
    return f"42454E{0xA0 + suite:02X}{index:08X}"


#: The setup child's own meter (index 9): its counters never meet the workers'.
SETUP_METER_INDEX = 9


def oracle_sealed(aes: AESGCM, sc: int, ak: bytes, title: bytes, ic: int, apdu: bytes) -> bytes:
    """``C || T`` (T the first 12 bytes of the GCM tag) by pyca, as the Green Book defines."""
    sealed = aes.encrypt(title + ic.to_bytes(4, "big"), apdu, bytes([sc]) + ak)
    return sealed[: len(apdu) + TAG_LENGTH]


def meter_response(aes: AESGCM, sc: int, ak: bytes, title: bytes, ic: int, apdu: bytes) -> bytes:
    """A glo-get-response as the meter ciphers it: 0xCC, length, SC, IC, C, T."""
    body = bytes([sc]) + ic.to_bytes(4, "big") + oracle_sealed(aes, sc, ak, title, ic, apdu)
    return bytes([GLO_GET_RESPONSE]) + ber_length(len(body)) + body


def meter_keys(result_path: Path, suite_of: dict[str, int]) -> dict[str, dict[str, bytes]]:
    """Each meter's keys as its simulated twin holds them after the key_transfer APDUs.

    The KMS never reveals a key: like the tests, a simulated meter that knows only its initial
    transport key applies the provisioning result's APDUs and unwraps the keys with pyca.
    """
    from tests.interop.meter import MANAGEMENT_SETUP, SimulatedMeter

    out: dict[str, dict[str, bytes]] = {}
    for line in result_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        title = record["system_title"]
        if title not in suite_of:
            continue
        suite = suite_of[title]
        meter = SimulatedMeter(bytes.fromhex(title), suite, TRANSPORT_KEYS[suite][1])
        for setup in record["setups"]:
            for apdu in setup["apdus"]:
                if meter.apply(bytes.fromhex(apdu))[-2:] != b"\x00\x00":
                    raise SystemExit(f"the simulated meter {title} refused its key_transfer")
        out[title] = meter.keys(MANAGEMENT_SETUP)
    return out


# --- timed loops ---------------------------------------------------------------------------------


class Loop:
    """One measurement in a worker: ``step(n)`` does up to n operations and returns how many (fewer
    when it ran out of inputs); ``check(ops)`` runs off the clock afterwards, returns problems."""

    def __init__(
        self,
        step: Callable[[int], int],
        check: Callable[[int], list[str]] | None = None,
        *,
        commits: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.step = step
        self.check = check
        self.commits = commits
        #: Wall and CPU seconds spent inside ``step`` on work that is not measured (verify's
        #: responses made on the clock when the prepared ones ran out), taken off the figures.
        self.excluded = [0.0, 0.0]


def run_timed(
    loop: Loop, start_at: float, seconds: float | None, count: int | None, profile: str | None
) -> dict[str, Any]:
    """Wait for the shared start instant, then run for ``seconds`` or ``count`` operations."""
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    profiler: Any = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    commits_before = loop.commits() if loop.commits else (0, 0)
    busy_before = busy_cpu_seconds()
    cpu_before = cpu_seconds()
    late = time.time() - start_at
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    ops = 0
    exhausted = False
    step = loop.step
    if count is not None:
        while ops < count and not exhausted:
            n = min(BATCH, count - ops)
            done = step(n)
            exhausted = done < n
            ops += done
    else:
        assert seconds is not None
        deadline = started + seconds
        while time.perf_counter() < deadline:
            done = step(BATCH)
            ops += done
            if done < BATCH:
                exhausted = True
                break
    elapsed = time.perf_counter() - started - loop.excluded[0]
    if profiler is not None:
        profiler.disable()
    cpu = cpu_seconds() - cpu_before - loop.excluded[1]
    busy_after = busy_cpu_seconds()
    commits_after = loop.commits() if loop.commits else (0, 0)
    problems = loop.check(ops) if loop.check else []
    if exhausted:
        problems.append(f"ran out of prepared inputs after {elapsed:.2f} s")
    if profiler is not None:
        assert profile is not None
        dump_profile(profiler, profile, (25, 30))
    return {
        "ops": ops,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "busy_seconds": None
        if busy_before is None or busy_after is None
        else busy_after - busy_before,
        "late_start": late,
        "commits": commits_after[0] - commits_before[0],
        "transactions": commits_after[1] - commits_before[1],
        "checks": "; ".join(problems) or "ok",
    }


# --- worker: floor and pyca (bare python-pkcs11, no KMS code) ------------------------------------


class FloorWorker:
    """Bare python-pkcs11 on the benchmark token, and pyca in process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import pkcs11
        import pkcs11.exceptions as p11e

        lib = pkcs11.lib(spec["module"])
        token = lib.get_token(token_label=spec["token_label"])
        delay = 0.02
        for attempt in range(8):
            try:
                # One login per process (docs/token.md section 5); two at the same instant can
                # collide on the token file, so retry like the adapter does.
                self.session = token.open(rw=True, user_pin=os.environ["KMS_USER_PIN"])
                break
            except (p11e.GeneralError, p11e.DeviceError, p11e.FunctionFailed):
                if attempt == 7:
                    raise
                time.sleep(delay)
                delay *= 2
        self.keys: dict[int, tuple[Any, bytes, bytes]] = {}
        self.title = bytes.fromhex(CLIENT_SYSTEM_TITLE)
        self.ic = 1

    def key(self, suite: int) -> tuple[Any, bytes, bytes]:
        """(session object, its value, an AK) for the suite's key length.

        The value is known so that pyca can check the token's output and cipher the floor's
        inputs; the object has the KMS's EK_FOR_USE template (kms.hsm.templates.session_key).
        """
        from pkcs11 import Attribute, KeyType, ObjectClass

        if suite not in self.keys:
            value = os.urandom(KEY_LENGTH[suite])
            template = {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.TOKEN: False,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
                Attribute.DERIVE: False,
                Attribute.VALUE: value,
            }
            obj = self.session.create_object(template)
            self.keys[suite] = (obj, value, os.urandom(KEY_LENGTH[suite]))
        return self.keys[suite]

    def prepare(self, kind: str, suite: int, size: int, **_: Any) -> Loop:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        key, value, ak = self.key(suite)
        aes = AESGCM(value)
        sc = SC_AUTH_ENC | suite
        aad = bytes([sc]) + ak
        title = self.title
        mech = Mechanism.AES_GCM
        last: list[Any] = [None, 0]

        if kind in ("pyca-encrypt", "token-encrypt"):
            apdu = plain_request(size)
            if kind == "pyca-encrypt":

                def step(n: int) -> int:
                    ic = self.ic
                    out = b""
                    for i in range(ic, ic + n):
                        out = aes.encrypt(title + i.to_bytes(4, "big"), apdu, aad)
                    self.ic = ic + n
                    last[0], last[1] = out[: len(apdu) + TAG_LENGTH], ic + n - 1
                    return n

            else:

                def step(n: int) -> int:
                    ic = self.ic
                    out = b""
                    for i in range(ic, ic + n):
                        params = GCMParams(title + i.to_bytes(4, "big"), aad, 96)
                        out = key.encrypt(apdu, mechanism=mech, mechanism_param=params)
                    self.ic = ic + n
                    last[0], last[1] = out, ic + n - 1
                    return n

            def check(ops: int) -> list[str]:
                if not ops:
                    return ["no operation done"]
                expected = oracle_sealed(aes, sc, ak, title, last[1], apdu)
                return [] if bytes(last[0]) == expected else ["output differs from pyca's"]

            step(BATCH * 8)  # warm-up
            return Loop(step, check)

        # Decrypt: a pool of distinct ciphertexts (the token keeps no counter; reuse is fine).
        apdu = plain_response(size)
        pool = []
        for i in range(1024):
            iv = title + (0x8000_0000 + i).to_bytes(4, "big")
            sealed = aes.encrypt(iv, apdu, aad)
            data = sealed if kind == "pyca-decrypt" else sealed[: len(apdu) + TAG_LENGTH]
            pool.append((iv, data))
        position = [0]
        if kind == "pyca-decrypt":

            def step(n: int) -> int:
                start = position[0]
                out = b""
                for iv, data in pool[start : start + n]:
                    out = aes.decrypt(iv, data, aad)
                position[0] = (start + n) % len(pool)
                last[0] = out
                return n

        else:

            def step(n: int) -> int:
                start = position[0]
                out = b""
                for iv, data in pool[start : start + n]:
                    params = GCMParams(iv, aad, 96)
                    out = key.decrypt(data, mechanism=mech, mechanism_param=params)
                position[0] = (start + n) % len(pool)
                last[0] = out
                return n

        def check_plain(ops: int) -> list[str]:
            if not ops:
                return ["no operation done"]
            return [] if bytes(last[0]) == apdu else ["plaintext differs"]

        step(BATCH * 8)  # warm-up
        return Loop(step, check_plain)

    def close(self) -> None:
        self.session.close()


# --- worker: the KMS -----------------------------------------------------------------------------


class KmsWorker:
    """The APDU service of one head-end process: its own login and database connection."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from sqlalchemy import event

        from kms.config import load_config
        from kms.db import Database
        from kms.hsm import open_hsm
        from kms.services.hes.protection import apdu_protection_factory

        self.config = load_config(os.environ)
        self.hsm = open_hsm(self.config)
        self.db = Database(self.config.database_url)
        self.service = apdu_protection_factory(self.hsm, self.db, self.config)
        self.counts = {"commit": 0, "begin": 0}

        def on_commit(_conn: Any) -> None:
            self.counts["commit"] += 1

        def on_begin(_conn: Any) -> None:
            self.counts["begin"] += 1

        event.listen(self.db.engine, "commit", on_commit)
        event.listen(self.db.engine, "begin", on_begin)
        suite_of = {title: suite for title, suite in spec["meters"].items()}
        self.meter_keys = meter_keys(Path(spec["result"]), suite_of)
        #: The next IC each meter sends (the KMS's receive floor only moves up).
        self.response_ic: dict[str, int] = dict.fromkeys(suite_of, 1)
        self.client = bytes.fromhex(CLIENT_SYSTEM_TITLE)

    def committed(self) -> tuple[int, int]:
        return self.counts["commit"], self.counts["begin"]

    def prepare(
        self, kind: str, suite: int, size: int, meter: str, seconds: float | None,
        count: int | None, **_: Any,
    ) -> Loop:  # fmt: skip
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        keys = self.meter_keys[meter]
        title = bytes.fromhex(meter)
        sc = SC_AUTH_ENC | suite
        aes = AESGCM(keys["GUEK"])
        ak = keys["GAK"]
        service = self.service
        actor = self.config.actor
        if kind == "protect":
            apdu = plain_request(size)
            protect = service.protect
            last: list[Any] = [None]

            def step(n: int) -> int:
                result = None
                for _ in range(n):
                    result = protect(title, apdu, sc, actor=actor)
                last[0] = result
                return n

            step(BATCH * 8)  # warm-up: keys unwrapped and a counter block reserved off the clock
            first_ic = last[0].invocation_counter

            def check(ops: int) -> list[str]:
                result = last[0]
                problems = []
                if result.invocation_counter - first_ic != ops:
                    problems.append(f"ICs {first_ic}..{result.invocation_counter} for {ops} APDUs")
                header = 1
                _, header = read_ber_length(result.apdu, header)
                ic = int.from_bytes(result.apdu[header + 1 : header + 5])
                expected = oracle_sealed(aes, sc, ak, self.client, ic, apdu)
                if result.apdu[header] != sc or result.apdu[header + 5 :] != expected:
                    problems.append("the last protected APDU is not what pyca computes")
                return problems

            return Loop(step, check, commits=self.committed)

        # verify: the meter's responses, with strictly increasing ICs, made by pyca up front.
        apdu = plain_response(size)
        verify = service.verify

        def responses(n: int) -> list[bytes]:
            first = self.response_ic[meter]
            self.response_ic[meter] = first + n
            return [meter_response(aes, sc, ak, title, ic, apdu) for ic in range(first, first + n)]

        calibration = responses(BATCH * 4)
        began = time.perf_counter()
        for response in calibration:  # warm-up, and how many to prepare
            if verify(title, response, actor=actor).apdu != apdu:
                raise RuntimeError("verify returned another plaintext")
        rate = len(calibration) / (time.perf_counter() - began)
        wanted = count if count is not None else int(rate * (seconds or 0) * 3) + 4 * BATCH
        pool = responses(min(wanted, 1_000_000))
        position = [0]
        bad = [0]

        def verify_step(n: int) -> int:
            start = position[0]
            if count is None and start + n > len(pool):
                # The database got faster than calibrated: make more, off the figures.
                wall, cpu = time.perf_counter(), cpu_seconds()
                pool[:] = pool[start:] + responses(len(pool))
                position[0] = start = 0
                loop.excluded[0] += time.perf_counter() - wall
                loop.excluded[1] += cpu_seconds() - cpu
            chunk = pool[start : start + n]
            for response in chunk:
                if verify(title, response, actor=actor).apdu != apdu:
                    bad[0] += 1
            position[0] = start + len(chunk)
            return len(chunk)

        def verify_check(ops: int) -> list[str]:
            return [f"{bad[0]} plaintexts differ"] if bad[0] else []

        loop = Loop(verify_step, verify_check, commits=self.committed)
        return loop

    def close(self) -> None:
        self.service.close()
        self.db.dispose()
        self.hsm.close()


def worker_main(kind: str, spec: dict[str, Any]) -> int:
    """A long-lived worker: one JSON command per stdin line, one JSON reply per command."""
    worker: FloorWorker | KmsWorker = FloorWorker(spec) if kind == "floor" else KmsWorker(spec)
    report({"ok": True, "pid": os.getpid()})
    loop: Loop | None = None
    try:
        while line := sys.stdin.readline():
            command = json.loads(line)
            try:
                if command["cmd"] == "prepare":
                    loop = worker.prepare(**command)
                    report({"ok": True})
                elif command["cmd"] == "go":
                    assert loop is not None
                    result = run_timed(
                        loop,
                        command["start_at"],
                        command.get("seconds"),
                        command.get("count"),
                        command.get("profile"),
                    )
                    loop = None
                    report({"ok": True, **result})
                elif command["cmd"] == "exit":
                    break
            except Exception as exc:  # reported to the parent, which stops
                report({"ok": False, "error": f"{exc.__class__.__name__}: {exc}"})
    finally:
        worker.close()
    return 0


# --- setup child ---------------------------------------------------------------------------------


def setup_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Root keys, transport keys, N meters provisioned and confirmed; exact counts per APDU."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from sqlalchemy import event

    from kms.config import load_config
    from kms.db import Database
    from kms.db.migrate import upgrade
    from kms.keystore import hierarchy
    from kms.services.hes.protection import apdu_protection_factory
    from kms.services.root import Resources, Services

    workdir = Path(spec["workdir"])
    config = load_config(os.environ)
    hsm = CountingHsm(config)  # counts its token calls
    try:
        db = Database(config.database_url)
        upgrade(db.engine)
        with db.begin() as session:
            hierarchy.initialise(hsm, session)
            for suite in spec["suites"]:
                label, value = TRANSPORT_KEYS[suite]
                hierarchy.create_transport_key(hsm, session, label, value, len(value))
        meters = {title: suite for title, suite in spec["meters"].items()}
        manifest = workdir / "manifest.csv"
        with manifest.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["system_title", "suite", "initial_kek", "serial", "setups"])
            for n, (title, suite) in enumerate(meters.items()):
                writer.writerow([title, str(suite), TRANSPORT_KEYS[suite][0], f"SN{n:08d}", ""])
        result = Path(spec["result"])
        services = Services(resources=Resources(config, hsm=hsm, database=db))
        services.provisioning.provision(manifest, result, actor=config.actor)
        services.provisioning.confirm([bytes.fromhex(t) for t in meters], actor=config.actor)

        # Exact counts on the setup's own meter of each suite: token calls per APDU (the floor
        # makes one) and database commits per protected APDU over SETUP_PROTECTS APDUs.
        own = {t: s for t, s in meters.items() if int(t[-8:], 16) == SETUP_METER_INDEX}
        keys = meter_keys(result, own)
        service = apdu_protection_factory(hsm, db, config)
        commits = [0]
        event.listen(db.engine, "commit", lambda _c: commits.__setitem__(0, commits[0] + 1))
        counts: dict[str, Any] = {}
        for title, suite in own.items():
            st, sc = bytes.fromhex(title), SC_AUTH_ENC | suite
            # The first protect unwraps the keys and reserves the first block: counted too.
            hsm.reset_counts()
            commits[0] = 0
            for _ in range(SETUP_PROTECTS):
                service.protect(st, GET_REQUEST, sc, actor=config.actor)
            protect_calls, protect_commits = hsm.token_calls, commits[0]
            service.protect(st, GET_REQUEST, sc, actor=config.actor)  # keys cached from here on
            hsm.reset_counts()
            commits[0] = 0
            for _ in range(SETUP_PROTECTS):
                service.protect(st, GET_REQUEST, sc, actor=config.actor)
            steady_calls, steady_commits = hsm.token_calls, commits[0]
            aes = AESGCM(keys[title]["GUEK"])
            plain = plain_response(13)
            service.verify(
                st, meter_response(aes, sc, keys[title]["GAK"], st, 1, plain), actor=config.actor
            )
            hsm.reset_counts()
            commits[0] = 0
            for ic in range(2, 2 + SETUP_VERIFIES):
                response = meter_response(aes, sc, keys[title]["GAK"], st, ic, plain)
                service.verify(st, response, actor=config.actor)
            counts[str(suite)] = {
                "protects": SETUP_PROTECTS,
                "protect_token_calls_first_run": protect_calls,
                "protect_commits_first_run": protect_commits,
                "protect_token_calls": steady_calls,
                "protect_commits": steady_commits,
                "verifies": SETUP_VERIFIES,
                "verify_token_calls": hsm.token_calls,
                "verify_commits": commits[0],
            }
        service.close()
        db.dispose()
    finally:
        hsm.close()
    return {"counts": counts, "ic_block_size": config.ic_block_size}


# --- parent --------------------------------------------------------------------------------------


class Worker:
    """A worker process and its command pipe."""

    def __init__(self, kind: str, name: str, spec: dict[str, Any], env: dict[str, str]) -> None:
        self.name = name
        command = module_command(__spec__.name, "--worker", kind, "--spec", json.dumps(spec))
        self.proc = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1,
        )  # fmt: skip
        self.pid = self.receive()["pid"]

    def send(self, message: dict[str, Any]) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def receive(self) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        while True:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} exited with status {self.proc.wait()}")
            message = read_report(line)
            if message is not None:
                if not message.get("ok"):
                    raise RuntimeError(f"worker {self.name}: {message.get('error')}")
                return message

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"cmd": "exit"})
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(
    workers: list[Worker],
    spec: dict[str, Any],
    args: argparse.Namespace,
    db_engine: Engine | None,
) -> dict[str, Any]:
    """Prepare every worker, start them together, and add their figures up."""
    for index, worker in enumerate(workers):
        per_worker = dict(spec)
        if "meters" in spec:
            per_worker["meter"] = spec["meters"][index]
        per_worker.pop("meters", None)
        worker.send({"cmd": "prepare", **per_worker, "seconds": args.seconds, "count": args.count})
    for worker in workers:
        worker.receive()
    backends_before = backend_cpu_seconds(db_engine) if db_engine is not None else None
    start_at = time.time() + 0.1
    profile = None
    if args.profile and spec["kind"] in FLOOR_OF and len(workers) == 1:
        name = f"{spec['kind']}-suite{spec['suite']}-{spec['size']}.prof"
        profile = str(Path(args.profile).resolve() / name)
    for worker in workers:
        worker.send(
            {"cmd": "go", "start_at": start_at, "seconds": args.seconds, "count": args.count,
             "profile": profile}
        )  # fmt: skip
    parts = [worker.receive() for worker in workers]
    backends_after = backend_cpu_seconds(db_engine) if db_engine is not None else None
    db_cpu = backends_used(backends_before, backends_after) or 0.0
    ops = sum(p["ops"] for p in parts)
    seconds = max(p["seconds"] for p in parts)
    cpu = sum(p["cpu_seconds"] for p in parts)
    other = None
    # /proc/stat counts in ticks of 10 ms: a shorter section says nothing about other load.
    if parts[0]["busy_seconds"] is not None and parts[0]["seconds"] >= 0.25:
        other = max(0.0, (parts[0]["busy_seconds"] - cpu - db_cpu) / parts[0]["seconds"])
    problems = [f"{w.name}: {p['checks']}" for w, p in zip(workers, parts, strict=True)]
    problems = [p for p in problems if not p.endswith(": ok")]
    commits = sum(p["commits"] for p in parts)
    return {
        **spec,
        "processes": len(workers),
        "ops": ops,
        "seconds": seconds,
        "ops_per_s": ops / seconds,
        "us_per_op": seconds / ops * 1e6 * len(workers) if ops else None,
        "cpu_seconds": cpu,
        "db_server_cpu_seconds": db_cpu,
        "cpu_us_per_op": (cpu + db_cpu) / ops * 1e6 if ops else None,
        "other_cores": other,
        "commits": commits,
        "transactions": sum(p["transactions"] for p in parts),
        "commits_per_1000": commits / ops * 1000 if ops else None,
        "late_start": max(p["late_start"] for p in parts),
        "workers": parts,
        "checks": "; ".join(problems) or "ok",
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeats of one measurement as one: totals of operations, seconds, CPU and commits."""
    if len(runs) == 1:
        return runs[0]
    ops = sum(m["ops"] for m in runs)
    seconds = sum(m["seconds"] for m in runs)
    cpu = sum(m["cpu_seconds"] + m["db_server_cpu_seconds"] for m in runs)
    commits = sum(m["commits"] for m in runs)
    others = [m["other_cores"] for m in runs if m["other_cores"] is not None]
    checks = [m["checks"] for m in runs if m["checks"] != "ok"]
    return {
        "ops": ops,
        "seconds": seconds,
        "ops_per_s": ops / seconds,
        "us_per_op": seconds / ops * 1e6 * runs[0]["processes"] if ops else None,
        "cpu_us_per_op": cpu / ops * 1e6 if ops else None,
        "other_cores": max(others) if others else None,
        "commits": commits,
        "commits_per_1000": commits / ops * 1000 if ops else None,
        "repeats": len(runs),
        "checks": "; ".join(checks) or "ok",
    }


def derive_rows(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (suite, size, kind): 1- and 2-process figures (repeats pooled), ratios."""
    grouped: dict[tuple[int, int, str, int], list[dict[str, Any]]] = {}
    for m in measurements:
        grouped.setdefault((m["suite"], m["size"], m["kind"], m["processes"]), []).append(m)
    by_key = {key: pooled(runs) for key, runs in grouped.items()}
    rows = []
    seen = []
    for m in measurements:
        key = (m["suite"], m["size"], m["kind"])
        if key not in seen:
            seen.append(key)
    for suite, size, kind in seen:
        one = by_key.get((suite, size, kind, 1))
        two = by_key.get((suite, size, kind, 2))
        row: dict[str, Any] = {"suite": suite, "size": size, "kind": kind, "one": one, "two": two}
        if one and two:
            row["scaling"] = two["ops_per_s"] / one["ops_per_s"]
        floor_kind = FLOOR_OF.get(kind)
        if floor_kind:
            for procs, name in ((1, "floor_ratio_1"), (2, "floor_ratio_2")):
                mine = by_key.get((suite, size, kind, procs))
                floor = by_key.get((suite, size, floor_kind, procs))
                if mine and floor:
                    row[name] = mine["ops_per_s"] / floor["ops_per_s"]
                    row[name.replace("ratio", "cpu_ratio")] = (
                        floor["cpu_us_per_op"] / mine["cpu_us_per_op"]
                    )
        host = by_key.get((suite, size, HOST_OF.get(kind, ""), 1))
        if host and one:
            row["host_ratio"] = one["ops_per_s"] / host["ops_per_s"]
        others = [m["other_cores"] for m in (one, two) if m and m["other_cores"] is not None]
        row["other_cores"] = max(others) if others else None
        checks = [m["checks"] for m in (one, two) if m and m["checks"] != "ok"]
        row["checks"] = "; ".join(checks) or "ok"
        rows.append(row)
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="APDU protect/verify throughput of the KMS against a bare-token floor and "
        "pyca, in 1 and 2 processes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help=f"duration of each measurement (default {DEFAULT_SECONDS} unless --count is given)",
    )
    parser.add_argument(
        "--count", type=int, default=None, help="operations per process per measurement instead"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each suite and size's sequence of measurements this many times, interleaved, "
        "and pool them (steadier ratios on a noisy machine)",
    )
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="SQLAlchemy URL of a PostgreSQL server whose role may CREATE DATABASE (default: "
        "$KMS_TEST_POSTGRES_URL, else `scripts/postgres-test.sh url`)",
    )
    parser.add_argument(
        "--suites", default=",".join(map(str, DEFAULT_SUITES)), help="comma-separated: 0,2"
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="APDU sizes in bytes"
    )
    add_report_options(
        parser,
        "run the 1-process KMS measurements under cProfile, write DIR/<kind>-suite<s>-"
        "<size>.prof and print the top functions on stderr (their timings are then inflated)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count is not None and args.seconds is not None:
        parser.error("--seconds and --count exclude each other")
    if args.count is None and args.seconds is None:
        args.seconds = DEFAULT_SECONDS
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    if (args.count is not None and args.count < 1) or (
        args.seconds is not None and args.seconds <= 0
    ):
        parser.error("--seconds and --count must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.worker == "setup":
        report(setup_main(json.loads(args.spec)))
        return 0
    if args.worker:
        return worker_main(args.worker, json.loads(args.spec))
    suites = [int(s) for s in args.suites.split(",") if s.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not suites or any(s not in KEY_LENGTH for s in suites):
        raise SystemExit("--suites: 0 and/or 2")
    if not sizes or any(s != len(GET_REQUEST) and not 64 <= s <= 0xFF00 for s in sizes):
        raise SystemExit(f"--sizes: {len(GET_REQUEST)}, or between 64 and 65280 bytes")
    module = softhsm_module()
    pg_server = require_postgres(args.postgresql) if args.database == "postgresql" else None

    workdir = Path(tempfile.mkdtemp(prefix="kms-bench-apdu-"))
    measurements: list[dict[str, Any]] = []
    setup: dict[str, Any] = {}
    notes: list[str] = []
    status = 0
    workers: list[Worker] = []
    try:
        env, token_label = softhsm_token(workdir, module)
        with contextlib.ExitStack() as stack:
            db_engine = None
            if args.database == "sqlite":
                database_url = f"sqlite:///{workdir / 'kms.db'}"
            else:
                from sqlalchemy import create_engine
                from sqlalchemy.pool import NullPool

                assert pg_server is not None
                database_url = stack.enter_context(postgres_database(pg_server))
                db_engine = create_engine(database_url, poolclass=NullPool)
                stack.callback(db_engine.dispose)
            (workdir / "kms.toml").touch()  # KMS_CONFIG names an empty file: env decides
            env.update(
                KMS_PKCS11_MODULE=module,
                KMS_TOKEN_LABEL=token_label,
                KMS_DATABASE_URL=database_url,
                KMS_CONFIG=str(workdir / "kms.toml"),
                KMS_ACTOR="benchmark",
                KMS_CLIENT_SYSTEM_TITLE=CLIENT_SYSTEM_TITLE,
            )
            meters = {
                meter_title(suite, index): suite
                for suite in suites
                for index in (0, 1, SETUP_METER_INDEX)
            }
            result = workdir / "result.jsonl"
            log(f"token {token_label!r} in {workdir}; setup: root keys, {len(meters)} meters")
            setup = run_setup(
                {"workdir": str(workdir), "suites": suites, "meters": meters,
                 "result": str(result)},
                env,
            )  # fmt: skip
            stack.callback(close_workers, workers)
            base = {"module": module, "token_label": token_label}
            # One at a time, each logged in before the next starts (logins can collide).
            floors = [Worker("floor", f"floor{i}", base, env) for i in range(2)]
            workers.extend(floors)
            worker_meters = {t: s for t, s in meters.items() if int(t[-8:], 16) < 2}
            kms_spec = {**base, "meters": worker_meters, "result": str(result)}
            kmss = [Worker("kms", f"kms{i}", kms_spec, env) for i in range(2)]
            workers.extend(kmss)
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
            plan = [
                (suite, size, repeat, kind, procs)
                for suite in suites
                for size in sizes
                for repeat in range(args.repeat)
                for kind, counts in SCHEDULE
                for procs in counts
            ]
            for suite, size, repeat, kind, procs in plan:
                group = kmss if kind in FLOOR_OF else floors
                spec: dict[str, Any] = {"kind": kind, "suite": suite, "size": size}
                if kind in FLOOR_OF:
                    spec["meters"] = [meter_title(suite, i) for i in range(procs)]
                m = measure(group[:procs], spec, args, db_engine)
                m["repeat"] = repeat
                measurements.append(m)
                if m["checks"] != "ok":
                    status = 1
                log(
                    f"suite {suite} {size:>5} B {kind:<14} {procs}p: "
                    f"{m['ops_per_s']:>9,.0f} ops/s"
                    + (f", {m['commits']} commits" if kind in FLOOR_OF else "")
                    + ("" if m["checks"] == "ok" else f" [{m['checks']}]")
                )
            close_workers(workers)
    except (RuntimeError, KeyboardInterrupt) as exc:
        log(f"stopped: {exc!r}")
        status = 1
    finally:
        close_workers(workers)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    late = max((m["late_start"] for m in measurements), default=0.0)
    if late > 0.05:
        notes.append(f"a worker started up to {late * 1000:.0f} ms after the shared start time")
    document = {
        **document_header(),
        "database": args.database,
        "seconds": args.seconds,
        "count": args.count,
        "repeat": args.repeat,
        "profiled": bool(args.profile),
        "targets": {
            "floor_ratio_min": TARGET_FLOOR_RATIO,
            "scaling_min": TARGET_SCALING,
            "commits_per_1000_max": TARGET_COMMITS_PER_1000,
        },
        "setup": setup,
        "notes": notes,
        "rows": derive_rows(measurements),
        "measurements": measurements,
    }
    emit_report(document, args.json, print_table)
    return status


def close_workers(workers: list[Worker]) -> None:
    for worker in workers:
        worker.close()


def run_setup(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    return run_child(__spec__.name, ["--worker", "setup", "--spec", json.dumps(spec)], env, "setup")


# --- table ---------------------------------------------------------------------------------------


def print_table(document: dict[str, Any]) -> None:
    from rich.table import Table

    console = report_console(200)
    rows = document["rows"]
    if not rows:
        console.print("[red]no results[/red]")
        return
    how = (
        f"{document['seconds']:g} s per measurement"
        if document["seconds"] is not None
        else f"{document['count']:,} operations per process per measurement"
    )
    if document["repeat"] > 1:
        how += f", {document['repeat']} repeats pooled"
    table = Table(
        title=f"APDU protection throughput on {document['database']} ({how})",
        caption=(
            f"floor: bare python-pkcs11 GCM on the same token (session-object key); host: pyca "
            f"AESGCM in process. Targets: protect/floor >= {TARGET_FLOOR_RATIO:.2f}, "
            f"<= {TARGET_COMMITS_PER_1000:g} commit per 1,000 protected APDUs, "
            f"2 procs / 1 >= {TARGET_SCALING:.1f}"
        ),
    )
    for name, justify in (
        ("operation", "left"),
        ("APDU", "right"),
        ("SC", "right"),
        ("ops/s 1p", "right"),
        ("ops/s 2p", "right"),
        ("2p/1p", "right"),
        ("us/op 1p", "right"),
        ("CPU us/op 1p", "right"),
        ("vs floor 1p", "right"),
        ("vs floor 2p", "right"),
        ("vs floor CPU 1p", "right"),
        ("vs host 1p", "right"),
        ("commits/1k 1p / 2p", "right"),
        ("other CPU", "right"),
        ("checks", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    failed: list[str] = []
    for row in rows:
        one, two, kind = row["one"], row["two"], row["kind"]
        group = (row["suite"], row["size"])
        if previous is not None and group != previous:
            table.add_section()
        previous = group
        is_protect = kind == "protect"
        scaling = row.get("scaling")
        r1, r2 = row.get("floor_ratio_1"), row.get("floor_ratio_2")
        commits = "-"
        if kind in FLOOR_OF:
            parts = []
            for m in (one, two):
                if not m or m["commits_per_1000"] is None:
                    parts.append("-")
                    continue
                value = m["commits_per_1000"]
                if is_protect:
                    # A window of N APDUs may straddle one block boundary more than N / 1,000.
                    allowed = -(-m["ops"] // 1000) * TARGET_COMMITS_PER_1000
                    parts.append(coloured(value, m["commits"] <= allowed, ".2f"))
                else:
                    parts.append(f"{value:,.0f}")
            commits = " / ".join(parts)
        size = row["size"]
        table.add_row(
            LABELS[kind],
            f"{size:,} B" if size % 1024 else f"{size // 1024} KiB",
            f"0x{SC_AUTH_ENC | row['suite']:02X}",
            fmt(one and one["ops_per_s"], ",.0f"),
            fmt(two and two["ops_per_s"], ",.0f"),
            coloured(scaling, scaling is not None and scaling >= TARGET_SCALING, ".2f")
            if kind in ("protect", "token-encrypt")
            else fmt(scaling, ".2f"),
            fmt(one and one["us_per_op"], ",.1f"),
            fmt(one and one["cpu_us_per_op"], ",.1f"),
            coloured(r1, r1 is not None and r1 >= TARGET_FLOOR_RATIO, ".2f")
            if is_protect
            else fmt(r1, ".2f"),
            coloured(r2, r2 is not None and r2 >= TARGET_FLOOR_RATIO, ".2f")
            if is_protect
            else fmt(r2, ".2f"),
            fmt(row.get("floor_cpu_ratio_1"), ".2f"),
            fmt(row.get("host_ratio"), ".3f"),
            commits,
            fmt(row["other_cores"], ".2f"),
            "ok" if row["checks"] == "ok" else "[red]see below[/red]",
        )
        if row["checks"] != "ok":
            failed.append(f"{LABELS[kind]}, {size} B, suite {row['suite']}: {row['checks']}")
    console.print(table)
    for line in failed:
        console.print(f"[red]check failed:[/red] {line}")
    setup = document.get("setup") or {}
    for suite, c in (setup.get("counts") or {}).items():
        console.print(
            f"suite {suite}, exact counts on a meter of its own: {c['protects']:,} protects "
            f"(keys cached) made {c['protect_token_calls']:,} token calls and "
            f"{c['protect_commits']} commits "
            f"({c['protect_commits'] / c['protects'] * 1000:.2f} per 1,000; with the first "
            f"unwrap: {c['protect_token_calls_first_run']:,} calls, "
            f"{c['protect_commits_first_run']} commits); {c['verifies']} verifies made "
            f"{c['verify_token_calls']} token calls and {c['verify_commits']} commits"
        )
    if document["profiled"]:
        console.print("[yellow]profiled run: KMS 1-process timings include cProfile[/yellow]")
    for note in document["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"command: {document['command']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
