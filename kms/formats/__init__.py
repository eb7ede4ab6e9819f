"""Every file the KMS reads or writes, one module per format, and one way to write a file.

The services take and give these files; nothing else in the KMS opens one. Each format that is
JSON (or a line of JSON) has a published JSON Schema under ``schema/formats/`` in the
repository (shipped in the wheel), and the tests check that every file the KMS writes validates
against it. The text formats (key components, transport keys and HLS secrets) are documented in
``schema/formats/README.md``.

| module | file | direction |
|---|---|---|
| :mod:`~kms.formats.manifest` | provisioning manifest (CSV) | read by ``kms provision`` |
| :mod:`~kms.formats.result` | ``result.jsonl`` | written by ``kms provision``, read back |
| :mod:`~kms.formats.ceremony` | ceremony request and approval (JSON) | both |
| :mod:`~kms.formats.backup` | CA key backup (JSON) | both |
| :mod:`~kms.formats.components` | backup key component (text) | both |
| :mod:`~kms.formats.csr_batch` | CSRs in, certificates out (file, folder, JSONL) | both |
| :mod:`~kms.formats.key_file` | transport key and HLS secret files (hex text) | read |
| :mod:`~kms.formats.files` | reading a file, writing one atomically or only if new | -- |
"""
