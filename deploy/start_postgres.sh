#!/usr/bin/env bash
# Start a PostgreSQL cluster for Optuna storage and create the study database and role.
#
#   PGDATA=/srv/fs-pg PGPORT=5432 FS_DB_PASSWORD=change-me deploy/start_postgres.sh
#
# Env: PGDATA (cluster dir, created by initdb if empty; required), PGPORT (default 5432),
#      PGHOST_LISTEN (listen address, default 127.0.0.1; use '*' plus a pg_hba rule for a cluster),
#      FS_DB_USER (default focalnet), FS_DB_PASSWORD (required), FS_DB_NAME (default focalnet_search).
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` OS user (PGDATA and
# its parent are chowned to it). Prints the storage URL (password replaced by ***) on the last line.
# Stop: pg_ctl -D "$PGDATA" stop -m fast   (as the same user; see deploy/stop_postgres.sh)
set -euo pipefail
: "${PGDATA:?set PGDATA to the cluster directory}"
: "${FS_DB_PASSWORD:?set FS_DB_PASSWORD}"
PGPORT="${PGPORT:-5432}"
PGHOST_LISTEN="${PGHOST_LISTEN:-127.0.0.1}"
FS_DB_USER="${FS_DB_USER:-focalnet}"
FS_DB_NAME="${FS_DB_NAME:-focalnet_search}"
BIN="${PG_BIN:-$(dirname "$(command -v initdb)")}"
PSQL="$(command -v psql || echo "$BIN/psql")"

as_pg() {  # run a command as the server's OS user
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$PGDATA"
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PGDATA" "$(dirname "$PGDATA")"
    chmod 700 "$PGDATA"
fi
SOCKDIR="$PGDATA"  # unix socket inside the cluster dir: no /var/run permissions needed
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C >"$PGDATA.initdb.log" 2>&1 || { cat "$PGDATA.initdb.log" >&2; exit 1; }
fi
as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
    -o "-p $PGPORT -k $SOCKDIR -c listen_addresses=$PGHOST_LISTEN -c max_connections=200" start >/dev/null

psql_pg() { as_pg "$PSQL" -h "$SOCKDIR" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
# The password travels on stdin, never on a command line (ps would show it).
role="$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = '$FS_DB_USER'")"
if [ -z "$role" ]; then
    printf "CREATE ROLE \"%s\" LOGIN PASSWORD '%s';\n" "$FS_DB_USER" "${FS_DB_PASSWORD//\'/\'\'}" | psql_pg
fi
db="$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$FS_DB_NAME'")"
if [ -z "$db" ]; then
    psql_pg -c "CREATE DATABASE \"$FS_DB_NAME\" OWNER \"$FS_DB_USER\""
fi
HOST="$PGHOST_LISTEN"; [ "$HOST" = "*" ] && HOST="$(hostname -f)"
echo "postgresql://$FS_DB_USER:***@$HOST:$PGPORT/$FS_DB_NAME"
