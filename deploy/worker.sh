#!/usr/bin/env bash
# One search worker: joins (or creates) the study in shared storage and runs trials until the study's
# global budget is used. The same script runs on a laptop, in a SLURM array task and in a Kubernetes pod.
#
# Env (required): STUDY (spec TOML path),
#                 FS_STORAGE (postgresql://user:pw@host:port/db or journal:PATH) or FS_STORAGE_FILE (a file
#                 holding that URL, mode 0600: e.g. a mounted Kubernetes Secret),
#                 FS_TRACKING_URI (http://mlflow-host:5000, sqlite:///PATH or none)
# The URLs stay in the environment: they are never put on the command line, where `ps` shows them to
# every local user. MLflow server credentials go in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
# Env (optional): FS_THREADS (torch threads; default: the cores other processes leave free),
#                 FS_N_TRIALS (global budget; default: the spec's n_trials), FS_TIMEOUT_S,
#                 FS_PYTHON (default: .venv/bin/python of this checkout, else python),
#                 FOCALNET_SEARCH_HEARTBEAT_S / FOCALNET_SEARCH_GRACE_S (RDB heartbeat, default 10 / 30 s),
#                 FOCALNET_SEARCH_OUTAGE_S (how long storage calls retry through a database outage, 60 s),
#                 FOCALNET_SEARCH_TRACKING_RETRY_S / FOCALNET_SEARCH_TRACKING_WAIT_S (an MLflow call's retries
#                 before its write waits in the worker, 10 s; how long a leaving worker waits for them, 60 s),
#                 FOCALNET_SEARCH_CACHE (dataset cache dir).
# Extra arguments are passed on to `python -m search worker`.
# exec: the worker's PID is this script's PID (signals reach it; `worker` attr host:pid matches).
set -euo pipefail
: "${STUDY:?set STUDY to the study spec (TOML)}"
[ -n "${FS_STORAGE:-}${FS_STORAGE_FILE:-}" ] || { echo "set FS_STORAGE or FS_STORAGE_FILE" >&2; exit 2; }
: "${FS_TRACKING_URI:?set FS_TRACKING_URI (http://host:port, sqlite:///PATH or none)}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${FS_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export FS_TRACKING_URI
args=(worker "$STUDY" --no-progress)  # storage and tracking URLs are read from the environment
[ -n "${FS_THREADS:-}" ] && args+=(--threads "$FS_THREADS")
[ -n "${FS_N_TRIALS:-}" ] && args+=(--n-trials "$FS_N_TRIALS")
[ -n "${FS_TIMEOUT_S:-}" ] && args+=(--timeout-s "$FS_TIMEOUT_S")
exec "$PY" -m search "${args[@]}" "$@"
