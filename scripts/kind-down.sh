#!/usr/bin/env bash
# `make kind-down`: delete the kind cluster of `make kind-up`. ./shared-data (datasets,
# models, the job table) stays; remove it by hand if you want a clean start.
# When `make kind-up` ran the project's own engine (no Docker here), that engine is then
# stopped too, and its processes, network namespace, mounts and cgroups are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${KIND_CLUSTER:-trainingjob}
PY=${TJ_PYTHON:-.venv/bin/python}

local_engine=0
if [[ -x "$PY" ]] && exports=$("$PY" -m tjdevcluster.kind_cli env 2>/dev/null); then
  eval "$exports"
  local_engine=1
fi
if [[ $local_engine -eq 0 && -d "${TJ_CACHE_DIR:-$HOME/.cache/trainingjob-operator}/kind/engine" ]] &&
  [[ -x "$PY" ]] && [[ "$(id -u)" -eq 0 ]]; then
  if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    # The project's engine does not answer (killed?): remove whatever of it is left.
    exec "$PY" -m tjdevcluster.kind_cli down
  fi
fi
if [[ $local_engine -eq 1 ]]; then
  kind delete cluster --name "$CLUSTER"
  "$PY" -m tjdevcluster.kind_cli down
  exit 0
fi
command -v kind >/dev/null || { echo "kind-down: kind is not installed" >&2; exit 1; }
kind delete cluster --name "$CLUSTER"
