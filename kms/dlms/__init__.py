"""Pure DLMS/COSEM codecs: bytes in, bytes or frozen dataclasses out.

.. danger::

   This is a "hazmat" layer, in the sense of pyca/cryptography's ``hazmat`` package: it builds and
   parses the exact bytes the Green Book (DLMS UA 1000-2, IEC 62056-5-3) and the Blue Book
   (DLMS UA 1000-1, IEC 62056-6-2) define, and it checks their *form* only. It does not know which
   key a meter holds, whether a wrapped key unwraps, or whether an invocation counter was already
   used. Use it through ``kms.services``, which pairs it with the token and the database; calling it
   directly makes it easy to send a well-formed request that bricks a meter.

Why it is pure: no I/O, no clock, no randomness and no key material (it never imports ``pkcs11``,
``sqlalchemy``, ``gurux_dlms`` or ``dlms_cosem``). Everything variable -- the invocation counter,
the IV, an already wrapped key -- comes in as an argument, so the fixed vectors of the standards
and of ``tests/vectors`` replay against it byte for byte, as pyca's Fernet separates
``encrypt_at_time`` from its random parts.

Malformed *input* (bytes from a meter, text from a manifest) raises
:class:`kms.errors.InputError`, naming the field and the byte offset; a caller *bug* (an argument
of the wrong type or length from KMS code) raises ``TypeError`` or ``ValueError``.

Modules: :mod:`~kms.dlms.suites`, :mod:`~kms.dlms.system_title`, :mod:`~kms.dlms.obis`,
:mod:`~kms.dlms.axdr`, :mod:`~kms.dlms.action_request`, :mod:`~kms.dlms.key_transfer`,
:mod:`~kms.dlms.key_agreement`, :mod:`~kms.dlms.kdf`, :mod:`~kms.dlms.security_setup`,
:mod:`~kms.dlms.security_control`, :mod:`~kms.dlms.ciphered_apdu`,
:mod:`~kms.dlms.general_ciphering`, :mod:`~kms.dlms.general_signing`, :mod:`~kms.dlms.hls`,
:mod:`~kms.dlms.initiate_request`, :mod:`~kms.dlms.exception_response`,
:mod:`~kms.dlms.protection`.
"""
