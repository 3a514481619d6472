#!/usr/bin/env bash
# One search worker: joins (or creates) the study in shared storage and runs trials until the study's
# global budget is used. The same script runs on a laptop, in a SLURM array task and in a Kubernetes pod.
#
# Env (required): STUDY (spec TOML path), FS_STORAGE (postgresql://user:pw@host:port/db or journal:PATH),
#                 FS_TRACKING_URI (http://mlflow-host:5000, sqlite:///PATH or none)
# Env (optional): FS_THREADS (torch threads; default: all cores this process may use),
#                 FS_N_TRIALS (global budget; default: the spec's n_trials), FS_TIMEOUT_S,
#                 FS_PYTHON (default: .venv/bin/python of this checkout, else python),
#                 FOCALNET_SEARCH_HEARTBEAT_S / FOCALNET_SEARCH_GRACE_S (RDB heartbeat, default 10 / 30 s),
#                 FOCALNET_SEARCH_CACHE (dataset cache dir).
# Extra arguments are passed on to `python -m search worker`.
# exec: the worker's PID is this script's PID (signals reach it; `worker` attr host:pid matches).
set -euo pipefail
: "${STUDY:?set STUDY to the study spec (TOML)}"
: "${FS_STORAGE:?set FS_STORAGE (postgresql://... or journal:PATH)}"
: "${FS_TRACKING_URI:?set FS_TRACKING_URI (http://host:port, sqlite:///PATH or none)}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${FS_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
args=(worker "$STUDY" --storage "$FS_STORAGE" --tracking-uri "$FS_TRACKING_URI" --no-progress)
[ -n "${FS_THREADS:-}" ] && args+=(--threads "$FS_THREADS")
[ -n "${FS_N_TRIALS:-}" ] && args+=(--n-trials "$FS_N_TRIALS")
[ -n "${FS_TIMEOUT_S:-}" ] && args+=(--timeout-s "$FS_TIMEOUT_S")
exec "$PY" -m search "${args[@]}" "$@"
