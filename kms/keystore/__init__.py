"""The key hierarchy: root keys in the token, per-meter keys as wrapped, bound blobs."""
