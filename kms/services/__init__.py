"""Use cases: each module holds the HSM session and the database transaction together."""
