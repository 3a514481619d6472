#!/usr/bin/env bash
# Stop the cluster started by deploy/start_postgres.sh:  PGDATA=/srv/fs-pg deploy/stop_postgres.sh
set -euo pipefail
: "${PGDATA:?set PGDATA to the cluster directory}"
BIN="${PG_BIN:-$(dirname "$(command -v pg_ctl)")}"
if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -w -t 30 stop -m "${PG_STOP_MODE:-fast}"
else
    "$BIN/pg_ctl" -D "$PGDATA" -w -t 30 stop -m "${PG_STOP_MODE:-fast}"
fi
