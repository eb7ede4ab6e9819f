#!/usr/bin/env bash
# A local PostgreSQL server for the test suite, on Debian, run as root.
#
#   scripts/postgres-test.sh start   create the cluster if there is none, make it listen on
#                                    127.0.0.1 only, start it, wait until it accepts connections,
#                                    and create (or reset) the role kms_test/kms_test, LOGIN CREATEDB
#   scripts/postgres-test.sh stop    stop the cluster (nothing is deleted)
#   scripts/postgres-test.sh url     print the SQLAlchemy URL the tests use as KMS_TEST_POSTGRES_URL
#
# It uses Debian's cluster tools (postgresql-common): pg_lsclusters, pg_createcluster, pg_ctlcluster.
# The cluster is <newest installed major version>/main unless KMS_PG_VERSION or KMS_PG_CLUSTER say
# otherwise. `start` is idempotent: it works on a cluster that is running, stopped, or missing (a
# fresh `apt-get install postgresql` in a container without systemd usually creates the cluster but
# does not start it). The only setting it changes is listen_addresses, in a drop-in file
# conf.d/kms-test.conf; if that changes while the cluster is running, the cluster is restarted.
#
# The role and its password are for throwaway test databases only.

set -euo pipefail

# The caller's locale may not be generated on this machine (CI often passes LANG through); the
# cluster tools refuse an invalid one, and C.UTF-8 always exists on Debian.
export LC_ALL=C.UTF-8

readonly ROLE=kms_test
readonly PASSWORD=kms_test
readonly LISTEN=127.0.0.1
readonly CLUSTER=${KMS_PG_CLUSTER:-main}
readonly TIMEOUT=${KMS_PG_TIMEOUT:-60}
readonly DROPIN_NAME=kms-test.conf

log() { echo "postgres-test.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The newest installed server major version (e.g. 15), or $KMS_PG_VERSION.
server_version() {
    if [[ -n ${KMS_PG_VERSION:-} ]]; then
        echo "$KMS_PG_VERSION"
        return
    fi
    local dir best=""
    for dir in /usr/lib/postgresql/*/; do
        dir=${dir%/}
        [[ -x $dir/bin/postgres ]] || continue
        dir=${dir##*/}
        if [[ -z $best ]] || (( ${dir%%.*} > ${best%%.*} )); then
            best=$dir
        fi
    done
    [[ -n $best ]] || die "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)"
    echo "$best"
}

# One field of `pg_lsclusters` for our cluster: 3 = port, 4 = status, 7 = log file.
cluster_field() {
    pg_lsclusters --no-header 2>/dev/null \
        | awk -v v="$VERSION" -v c="$CLUSTER" -v f="$1" '$1 == v && $2 == c { print $f }'
}

cluster_exists() { [[ -n $(cluster_field 3) ]]; }
cluster_online() { [[ $(cluster_field 4) == online* ]]; }

# psql as the postgres superuser over the Unix socket (peer authentication).
psql_admin() {
    (cd / && runuser -u postgres -- psql --no-psqlrc --quiet --no-align --tuples-only \
        -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@")
}

require_tools() {
    local tool
    for tool in pg_lsclusters pg_createcluster pg_ctlcluster pg_isready psql; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install postgresql)"
    done
}

wait_until_ready() {
    local deadline=$((SECONDS + TIMEOUT))
    until pg_isready -q -h "$LISTEN" -p "$PORT" -d postgres; do
        if (( SECONDS >= deadline )); then
            log "the server did not accept connections on $LISTEN:$PORT within ${TIMEOUT}s"
            local logfile
            logfile=$(cluster_field 7)
            [[ -n $logfile && -r $logfile ]] && tail -n 20 "$logfile" >&2
            die "PostgreSQL $VERSION/$CLUSTER is not ready"
        fi
        sleep 0.5
    done
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "start must run as root (it runs pg_createcluster, pg_ctlcluster, runuser)"
    require_tools

    if ! cluster_exists; then
        log "creating cluster $VERSION/$CLUSTER"
        pg_createcluster --locale C.UTF-8 --encoding UTF8 "$VERSION" "$CLUSTER" >&2
    fi

    # Listen on 127.0.0.1 only. Debian's postgresql.conf ends with include_dir = 'conf.d', so a
    # drop-in there overrides the main file without editing it.
    local confdir=/etc/postgresql/$VERSION/$CLUSTER
    grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" "$confdir/postgresql.conf" \
        || die "$confdir/postgresql.conf has no include_dir = 'conf.d'; set listen_addresses = '$LISTEN' there"
    local dropin=$confdir/conf.d/$DROPIN_NAME
    local wanted="# Written by scripts/postgres-test.sh (dlms-kms tests).
listen_addresses = '$LISTEN'"
    local changed=0
    if [[ ! -f $dropin || $(<"$dropin") != "$wanted" ]]; then
        mkdir -p "$confdir/conf.d"
        printf '%s\n' "$wanted" >"$dropin"
        chown postgres:postgres "$dropin"
        changed=1
    fi

    if cluster_online; then
        if (( changed )); then
            log "restarting $VERSION/$CLUSTER so that it listens on $LISTEN only"
            pg_ctlcluster "$VERSION" "$CLUSTER" restart
        else
            log "cluster $VERSION/$CLUSTER is already running"
        fi
    else
        log "starting cluster $VERSION/$CLUSTER"
        pg_ctlcluster "$VERSION" "$CLUSTER" start
    fi

    PORT=$(cluster_field 3)
    wait_until_ready

    local listening
    listening=$(psql_admin -c "SHOW listen_addresses")
    [[ $listening == "$LISTEN" ]] \
        || die "listen_addresses is '$listening', not '$LISTEN' (set by ALTER SYSTEM? see postgresql.auto.conf)"

    psql_admin <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '$ROLE') THEN
        CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
    ELSE
        ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
    END IF;
END
\$\$;
SQL

    # Prove the URL works: password authentication over TCP, as the tests will connect.
    PGPASSWORD=$PASSWORD psql --no-psqlrc --quiet --tuples-only -h "$LISTEN" -p "$PORT" \
        -U "$ROLE" -d postgres -c "SELECT 1" >/dev/null \
        || die "cannot log in as $ROLE over TCP on $LISTEN:$PORT (check pg_hba.conf)"
    log "ready: $(url)"
}

cmd_stop() {
    require_tools
    if cluster_online; then
        [[ $(id -u) == 0 ]] || die "stop must run as root"
        pg_ctlcluster "$VERSION" "$CLUSTER" stop
        log "stopped cluster $VERSION/$CLUSTER"
    else
        log "cluster $VERSION/$CLUSTER is not running"
    fi
}

url() { echo "postgresql+psycopg2://$ROLE:$PASSWORD@$LISTEN:$PORT/postgres"; }

cmd_url() {
    command -v pg_lsclusters >/dev/null || die "pg_lsclusters not found (apt-get install postgresql)"
    PORT=$(cluster_field 3)
    [[ -n $PORT ]] || die "no cluster $VERSION/$CLUSTER; run: $0 start"
    url
}

case ${1:-} in
    start | stop | url) ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
esac

VERSION=$(server_version)
PORT=""
"cmd_$1"
