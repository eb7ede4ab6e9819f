#!/usr/bin/env bash
# The wheel works once installed, with no checkout: the contract of `make wheel-check` and CI.
#
#   scripts/wheel-check.sh
#
# 1. builds the wheel from a copy of the checkout's files (tracked and untracked, not ignored), so
#    that the build's own build/ and *.egg-info never land in the checkout;
# 2. checks that the wheel carries the HSM profiles, the Alembic migrations and the JSON Schemas;
# 3. installs it into a fresh venv in a temporary directory;
# 4. from an empty temporary working directory, with a clean environment (its own HOME, no KMS_*
#    variable but the token's, no PYTHONPATH) and a throwaway SoftHSM2 token (its own
#    SOFTHSM2_CONF and token directory), runs: kms config show, kms init, kms selftest,
#    kms transport-key import, kms provision of 10 meters, kms audit checkpoint, kms audit verify;
# 5. checks that the database went to the documented default (~/.local/share/dlms-kms/kms.db, the
#    directory mode 0700), that the working directory is still empty (no var/, no kms.db) and
#    that the checkout is as it was.
#
# Every command is printed before it runs (PINs never: they are in files). Any failure stops the
# script with a FAIL line and a non-zero status. The temporary directory is removed at the end,
# unless KEEP=1. PYTHON picks the interpreter of the venv (default python3).

set -euo pipefail
exec </dev/null

readonly REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly PYTHON=${PYTHON:-python3}
readonly MODULE=${KMS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
readonly METERS=10

say() { echo "wheel-check: $*"; }
fail() {
    echo "wheel-check: FAIL: $*" >&2
    exit 1
}

# --- the scratch area, and what the checkout looks like before ----------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kms-wheel-check.XXXXXX")
readonly TMP
cleanup() {
    status=$?
    if [[ ${KEEP:-} == 1 ]]; then
        say "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    if ((status != 0)); then
        echo "wheel-check: FAIL (exit $status); the last command printed above failed" >&2
    fi
}
trap cleanup EXIT

checkout_state() {
    # Every path git sees as changed, new or ignored, at any depth of the checkout.
    git -C "$REPO" status --porcelain=v1 --ignored --untracked-files=all
}
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    readonly IN_GIT=1
    checkout_state >"$TMP/checkout.before"
else
    readonly IN_GIT=0
fi

readonly SRC=$TMP/src DIST=$TMP/dist VENV=$TMP/venv HOME_DIR=$TMP/home WORK=$TMP/work
readonly INPUTS=$TMP/inputs SOFTHSM=$TMP/softhsm
mkdir -p "$SRC" "$DIST" "$HOME_DIR" "$WORK" "$INPUTS" "$SOFTHSM/tokens"

# Run a command, printing it first ("+ cmd args").
run() {
    echo "+ $*"
    "$@"
}

# --- 1. build the wheel from a copy ---------------------------------------------------------------

say "copying $REPO to $SRC"
if ((IN_GIT)); then
    # Tracked and untracked files as they are in the work tree (deleted ones skipped).
    git -C "$REPO" ls-files -z --cached --others --exclude-standard --deduplicate |
        (cd "$REPO" && while IFS= read -r -d '' path; do
            [[ -e $path ]] && printf '%s\0' "$path"
        done) |
        tar -C "$REPO" --null -T - -cf - | tar -C "$SRC" -xf -
else
    tar -C "$REPO" --exclude=./.venv --exclude=./var --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$SRC" -xf -
fi

run "$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
run "$VENV/bin/pip" wheel --quiet --no-deps --wheel-dir "$DIST" "$SRC"
wheels=("$DIST"/dlms_kms-*.whl)
[[ ${#wheels[@]} == 1 && -f ${wheels[0]} ]] || fail "expected one dlms_kms wheel in $DIST"
readonly WHEEL=${wheels[0]}
say "built $(basename "$WHEEL")"

# --- 2. what the wheel carries ------------------------------------------------------------------

"$VENV/bin/python" - "$WHEEL" "$SRC" <<'PY'
import sys
import zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
wanted = {"kms/_data/__init__.py", "kms/py.typed"}
for folder in ("hsm_profiles", "schema"):
    for path in (src / folder).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            wanted.add(f"kms/_data/{path.relative_to(src).as_posix()}")
missing = sorted(wanted - names)
if missing:
    sys.exit(f"wheel-check: FAIL: the wheel lacks {', '.join(missing)}")
strays = sorted(n for n in names if n.split("/")[0] in {"hsm_profiles", "schema", "tests"})
if strays:
    sys.exit(f"wheel-check: FAIL: the wheel has top-level folders it must not: {strays[:5]}")
print(f"wheel-check: the wheel carries {len(wanted)} data and marker files, e.g.:")
for name in sorted(wanted)[:6]:
    print(f"  {name}")
PY

# --- 3. install it --------------------------------------------------------------------------------

run "$VENV/bin/pip" install --quiet "$WHEEL"
readonly KMS=$VENV/bin/kms
[[ -x $KMS ]] || fail "the wheel installed no kms command"

# --- 4. a KMS from an empty directory ---------------------------------------------------------------

cat >"$SOFTHSM/softhsm2.conf" <<EOF
directories.tokendir = $SOFTHSM/tokens
objectstore.backend = file
log.level = ERROR
EOF

# PINs live in files of mode 0600 only; the kms reads the user PIN from its file.
umask 077
"$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(8))' >"$INPUTS/user.pin"
"$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(8))' >"$INPUTS/so.pin"
"$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16).upper())' >"$INPUTS/vendor.hex"
umask 022

# The environment of every kms command: nothing of the caller's KMS_*, XDG_* or PYTHONPATH.
readonly TOKEN_LABEL=wheel-check
kms_env=(
    env -i
    "PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin"
    "HOME=$HOME_DIR"
    "LANG=C.UTF-8"
    "SOFTHSM2_CONF=$SOFTHSM/softhsm2.conf"
    "KMS_PKCS11_MODULE=$MODULE"
    "KMS_TOKEN_LABEL=$TOKEN_LABEL"
    "KMS_USER_PIN_FILE=$INPUTS/user.pin"
    "KMS_ACTOR=wheel-check"
)

echo "+ softhsm2-util --init-token --free --label $TOKEN_LABEL --pin (user.pin) --so-pin (so.pin)"
"${kms_env[@]}" softhsm2-util --init-token --free --label "$TOKEN_LABEL" --module "$MODULE" \
    --pin "$(<"$INPUTS/user.pin")" --so-pin "$(<"$INPUTS/so.pin")" >/dev/null

{
    echo "system_title,suite,initial_kek,serial"
    for ((i = 1; i <= METERS; i++)); do
        printf '4D4D4D%010X,%d,vendor,WC%06d\n' "$i" $(((i - 1) % 2)) "$i"
    done
} >"$INPUTS/meters.csv"

cd "$WORK"
say "working directory $WORK (empty), HOME=$HOME_DIR"
say "every kms command below runs as: ${kms_env[*]} $KMS ..."
kms() {
    echo "+ kms $*"
    "${kms_env[@]}" "$KMS" "$@"
}

echo "+ python -c '...' (where kms, its migrations and its profiles come from)"
"${kms_env[@]}" "$VENV/bin/python" -c '
import sys, kms, kms._data
from kms.db.migrate import SCHEMA_DIR
from kms.hsm.profile import PROFILE_DIR
venv = sys.argv[1]
for what, path in (("kms", kms.__file__), ("migrations", SCHEMA_DIR), ("profiles", PROFILE_DIR)):
    print(f"wheel-check: {what} from {path}")
    if not str(path).startswith(venv):
        sys.exit(f"wheel-check: FAIL: {what} comes from {path}, outside the venv {venv}")
' "$VENV"
kms config show
kms init
kms selftest
kms transport-key import --label vendor --key-file "$INPUTS/vendor.hex"
kms provision --manifest "$INPUTS/meters.csv" --out "$TMP/result.jsonl"
kms audit checkpoint
kms audit verify

# --- 5. where everything went -------------------------------------------------------------------------

lines=$(wc -l <"$TMP/result.jsonl")
((lines == METERS)) || fail "result.jsonl has $lines lines, not $METERS"
say "result.jsonl: $lines meters"

readonly DATA_DIR=$HOME_DIR/.local/share/dlms-kms
[[ -f $DATA_DIR/kms.db ]] || fail "no database at the documented default $DATA_DIR/kms.db"
mode=$(stat -c %a "$DATA_DIR")
[[ $mode == 700 ]] || fail "$DATA_DIR has mode $mode, not 700"
say "database at $DATA_DIR/kms.db (directory mode $mode)"

[[ ! -e $WORK/var && ! -e $WORK/kms.db ]] || fail "var/ or kms.db appeared in the working directory"
left=$(ls -A "$WORK")
[[ -z $left ]] || fail "the working directory is not empty: $left"
say "the working directory is still empty"

cd "$REPO"
if ((IN_GIT)); then
    checkout_state >"$TMP/checkout.after"
    if ! diff -u "$TMP/checkout.before" "$TMP/checkout.after"; then
        fail "the checkout changed (above: git status before and after)"
    fi
    say "the checkout is as it was"
fi

say "OK: $(basename "$WHEEL") works installed, from an empty directory, with no checkout"
