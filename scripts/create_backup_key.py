"""Ceremony: create the CA backup wrapping key from officers' key components (the SO PIN from
KMS_SO_PIN or KMS_SO_PIN_FILE; see kms/services/pki/ca_backup.py); the same command as
`kms ca create-backup-key`, kept for the security officers' runbooks.

Usage: .venv/bin/python scripts/create_backup_key.py --component A.hex --component B.hex \
       [--generate] [--label kms-ca-backup-v1] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kms.cli.ca_backup import create_backup_key

if __name__ == "__main__":
    create_backup_key()
