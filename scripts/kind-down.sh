#!/usr/bin/env bash
# `make kind-down`: delete the kind cluster of `make kind-up`. ./shared-data (datasets,
# models, the job table) stays; remove it by hand if you want a clean start.
set -euo pipefail
CLUSTER=${KIND_CLUSTER:-trainingjob}
command -v kind >/dev/null || { echo "kind-down: kind is not installed" >&2; exit 1; }
kind delete cluster --name "$CLUSTER"
