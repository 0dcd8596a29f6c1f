#!/usr/bin/env bash
# Make a PostgreSQL server reachable for the store's tests and benchmark, and print its URL.
#
#   - FAAS_TEST_POSTGRES_URL set and answering -> print it, exit 0 (your own server)
#   - our private cluster already answering    -> print its URL, exit 0
#   - Debian/Ubuntu and root                   -> install `postgresql` with apt if missing,
#                                                 create a private cluster (initdb, run as the
#                                                 `postgres` user) in $FAAS_PG_DIR, listening on
#                                                 127.0.0.1:$FAAS_PG_PORT only, start it, create
#                                                 the role and database, print the URL
#   - otherwise                                -> explain what is missing, exit 1
#
# The last line of stdout is the SQLAlchemy URL, e.g.
#   postgresql+asyncpg://faas:faas@127.0.0.1:55432/faas_test
# The role may create databases: the tests make one per test, the benchmark one per run.
#
# A private cluster on its own port leaves any system cluster (port 5432) alone. Idempotent:
# a second run finds it answering and only prints the URL; concurrent runs are serialised.
#
# Environment knobs:
#   FAAS_PG_DIR     where the cluster lives (default /var/lib/faas-postgres)
#   FAAS_PG_PORT    its port (default 55432)
#   FAAS_PG_WAIT    seconds to wait for it to answer (default 30)
set -euo pipefail

BASE="${FAAS_PG_DIR:-/var/lib/faas-postgres}"
PORT="${FAAS_PG_PORT:-55432}"
WAIT_SECS="${FAAS_PG_WAIT:-30}"
ROLE=faas
PASSWORD=faas
DATABASE=faas_test
DATA="$BASE/data"
SOCKETS="$BASE/run"
LOG_FILE="$BASE/postgres.log"
URL="postgresql+asyncpg://${ROLE}:${PASSWORD}@127.0.0.1:${PORT}/${DATABASE}"

say() { printf 'ensure-postgres: %s\n' "$*" >&2; }

# libpq wants postgresql://, SQLAlchemy postgresql+asyncpg://: same URL otherwise.
libpq_url() { printf '%s' "${1/postgresql+asyncpg:/postgresql:}"; }

answers() { psql "$(libpq_url "$1")" -qAtc 'select 1' >/dev/null 2>&1; }

done_with() { say "postgresql reachable: $1"; printf '%s\n' "$1"; exit 0; }

if [[ -n ${FAAS_TEST_POSTGRES_URL:-} ]] && command -v psql >/dev/null 2>&1 && answers "$FAAS_TEST_POSTGRES_URL"; then
    done_with "$FAAS_TEST_POSTGRES_URL"
fi
if command -v psql >/dev/null 2>&1 && answers "$URL"; then
    done_with "$URL"
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "no PostgreSQL answers at $URL, and this is not Debian/Ubuntu as root: I cannot set one up."
    say "Install PostgreSQL >= 13, create a role that may create databases, and export"
    say "  FAAS_TEST_POSTGRES_URL=postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
    say "(or leave it unset and FAAS_REQUIRE_POSTGRES unset: the PostgreSQL tests then skip)."
    exit 1
fi

# One run at a time: two `make` targets in parallel must not both run initdb.
mkdir -p "$BASE"
exec 9>"$BASE/.lock"
flock 9

# The newest installed server version, installing Debian's `postgresql` if there is none.
find_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] && printf '%s' "$d"
}
BINDIR="$(find_bindir || true)"
if [[ -z $BINDIR ]] || ! command -v psql >/dev/null 2>&1; then
    say "installing postgresql with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql postgresql-client >&2
    BINDIR="$(find_bindir || true)"
    [[ -n $BINDIR ]] || { say "postgresql installed but no initdb found under /usr/lib/postgresql"; exit 1; }
fi

as_postgres() { runuser -u postgres -- "$@"; }

mkdir -p "$SOCKETS"
chown postgres:postgres "$BASE" "$SOCKETS"
if [[ ! -s $DATA/PG_VERSION ]]; then
    say "creating a private cluster in $DATA"
    rm -rf "$DATA"
    as_postgres "$BINDIR/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$BASE/initdb.log" 2>&1 \
        || { cat "$BASE/initdb.log" >&2; say "initdb failed"; exit 1; }
fi

if ! as_postgres "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "starting it on 127.0.0.1:$PORT (log: $LOG_FILE)"
    touch "$LOG_FILE" && chown postgres:postgres "$LOG_FILE"
    # autovacuum off: a test cluster of short-lived databases; a worker busy in one could not be
    # ended by the tests' DROP DATABASE ... WITH (FORCE) (it takes a superuser).
    as_postgres "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG_FILE" -w -t "$WAIT_SECS" start \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$SOCKETS -c max_connections=200 -c autovacuum=off" >&2
fi

psql_admin() { as_postgres psql -h "$SOCKETS" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

for _ in $(seq 1 $((WAIT_SECS * 2))); do
    psql_admin -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.5
done
psql_admin -c 'select 1' >/dev/null || { say "the cluster does not answer: see $LOG_FILE"; exit 1; }

if [[ -z $(psql_admin -c "select 1 from pg_roles where rolname = '$ROLE'") ]]; then
    psql_admin -c "create role $ROLE login createdb password '$PASSWORD'" >/dev/null
fi
if [[ -z $(psql_admin -c "select 1 from pg_database where datname = '$DATABASE'") ]]; then
    psql_admin -c "create database $DATABASE owner $ROLE" >/dev/null
fi

answers "$URL" || { say "created, but $URL does not answer: see $LOG_FILE"; exit 1; }
done_with "$URL"
