#!/usr/bin/env bash
# Installs (if missing) and starts PostgreSQL on 127.0.0.1 for tests/test_postgres.py, with a fresh database.
#
#   eval "$(.ci/services.sh)"    # exports NAS_TEST_POSTGRES_URL=postgresql://nas:nas@127.0.0.1:5432/nas_test
#
# stdout carries only the export line; progress goes to stderr. As root it uses Debian's packaged cluster
# (apt-get install postgresql, pg_ctlcluster); as another user it runs initdb + pg_ctl in $NAS_PG_DIR.
# Every run drops and recreates the database, so concurrent first-time table creation is exercised each time.
set -euo pipefail

PG_VERSION=${PG_VERSION:-15}
PG_PORT=${PG_PORT:-5432}
PG_USER=${NAS_PG_USER:-nas}
PG_PASSWORD=${NAS_PG_PASSWORD:-nas}
PG_DB=${NAS_PG_DB:-nas_test}
PG_DIR=${NAS_PG_DIR:-/tmp/nas-postgres}
BIN=/usr/lib/postgresql/$PG_VERSION/bin

log() { echo "services.sh: $*" >&2; }

if [[ ! -x $BIN/postgres ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL $PG_VERSION is not installed and installing it needs root"; exit 1
    fi
    log "installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

if [[ $(id -u) -eq 0 ]] && command -v pg_ctlcluster >/dev/null; then
    # Debian's cluster: listens on localhost, password (scram) auth for TCP connections.
    if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main"' | grep -q .; then
        log "creating cluster $PG_VERSION/main on port $PG_PORT"
        pg_createcluster "$PG_VERSION" main -p "$PG_PORT" >&2
    fi
    if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
        log "starting cluster $PG_VERSION/main"
        pg_ctlcluster "$PG_VERSION" main start >&2
    fi
    PG_PORT=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $3}')
    as_superuser() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"; }
else
    # No root: a private cluster owned by this user, trust auth on the unix socket, password on TCP.
    if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
        log "initdb into $PG_DIR/data"
        mkdir -p "$PG_DIR"
        "$BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >&2
    fi
    if ! "$BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
        log "starting a private server on 127.0.0.1:$PG_PORT"
        "$BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
            -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR" start >&2
    fi
    as_superuser() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"; }
fi

for _ in $(seq 60); do
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
done
"$BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >&2 || { log "server on 127.0.0.1:$PG_PORT is not ready"; exit 1; }

log "creating role $PG_USER and a fresh database $PG_DB"
as_superuser <<SQL
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN', '$PG_USER') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')
\gexec
ALTER ROLE "$PG_USER" LOGIN PASSWORD '$PG_PASSWORD';
DROP DATABASE IF EXISTS "$PG_DB" WITH (FORCE);
CREATE DATABASE "$PG_DB" OWNER "$PG_USER";
SQL

echo "export NAS_TEST_POSTGRES_URL=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
