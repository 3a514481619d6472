#!/usr/bin/env bash
# Run the MLflow tracking server that every worker logs to (foreground; exec, so its PID is this one).
#
#   MLFLOW_BACKEND_URI=sqlite:////srv/mlflow/mlflow.db MLFLOW_ARTIFACTS=/srv/mlflow/artifacts \
#   MLFLOW_HOST=127.0.0.1 MLFLOW_PORT=5000 deploy/start_mlflow_server.sh
#
# Env: MLFLOW_BACKEND_URI (sqlite:///ABS or postgresql://user:pw@host/db; required),
#      MLFLOW_ARTIFACTS (artifact directory served by the server; required),
#      MLFLOW_HOST (default 127.0.0.1 — bind to a cluster-reachable address only behind a firewall or
#      an authenticating proxy: the server has no authentication), MLFLOW_PORT (default 5000),
#      MLFLOW_WORKERS (default 2), MLFLOW_PYTHON (default: python next to this checkout's .venv, else python),
#      MLFLOW_SERVER_ENABLE_JOB_EXECUTION (default false here: MLflow's job runner and its ~7 huey consumer
#      processes serve GenAI jobs this harness never submits; tracking, UI and artifacts do not need them).
# Workers then use  --tracking-uri http://MLFLOW_HOST:MLFLOW_PORT
set -euo pipefail
: "${MLFLOW_BACKEND_URI:?set MLFLOW_BACKEND_URI}"
: "${MLFLOW_ARTIFACTS:?set MLFLOW_ARTIFACTS}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MLFLOW_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python; fi
fi
mkdir -p "$MLFLOW_ARTIFACTS"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
# --serve-artifacts (default) + --artifacts-destination: clients upload artifacts through the server,
# so workers need no shared filesystem. --default-artifact-root makes new experiments use that proxy.
# The backend URI (a PostgreSQL one holds a password) goes by environment, which `mlflow server` reads
# for --backend-store-uri: a command line is visible to every local user in `ps`.
export MLFLOW_BACKEND_STORE_URI="$MLFLOW_BACKEND_URI"
exec "$PY" -m mlflow server \
    --artifacts-destination "$MLFLOW_ARTIFACTS" \
    --default-artifact-root mlflow-artifacts:/ \
    --host "$HOST" --port "$PORT" --workers "${MLFLOW_WORKERS:-2}"
