"""Check a `kms audit export` file offline: no token, no database, only the file.

Recomputes every event's hash and link, and checks every checkpoint's ECDSA P-384 signature with
pyca/cryptography against the audit public key the file carries
(:func:`kms.formats.audit_export.verify_export`). Compare that key's fingerprint (printed) with
one you obtained independently: the file alone cannot prove whose key it is.

Usage: .venv/bin/python scripts/verify_audit_export.py audit.jsonl [--json]
Exit status 0 when intact, 6 when the chain or a signature is broken, 2 when the file is not an
export.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kms.errors import KMSError, exit_status_for
from kms.formats.audit_export import verify_export


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--json"]
    as_json = len(args) != len(argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        report = verify_export(Path(args[0]))
    except KMSError as exc:
        print(json.dumps(exc.to_dict()) if as_json else f"error: {exc.message}", file=sys.stderr)
        return exit_status_for(exc)
    if as_json:
        print(json.dumps({"ok": True, **dataclasses.asdict(report)}, indent=2, sort_keys=True))
    else:
        print(
            f"audit export intact: {report.events} events ({report.first_seq}..{report.last_seq}), "
            f"{report.checkpoints} checkpoint signatures verified, "
            f"{report.unsigned_tail} events after the last checkpoint"
        )
        for key in report.keys:
            print(f"audit key SHA-256 (of its DER SubjectPublicKeyInfo): {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
