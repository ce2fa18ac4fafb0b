#!/usr/bin/env bash
# `make kind-up`: a kind cluster with the TrainingJob operator installed by its Helm chart,
# a synthetic dataset and one example TrainingJob. Needs docker, kind, kubectl and helm.
# Run from anywhere; works in the repository root. Idempotent: run it again after a change
# to rebuild and reload the images and upgrade the release.
#
# With a Docker engine (the usual case) kind pulls kindest/node and the images are built
# with `docker build`. Without one (TJ_KIND_ENGINE=local, chosen when `docker info` fails)
# the project's own engine is started, isolated in a network namespace with no route off
# the machine, with a node image built here from package registries (root; see
# docs/INSTALL.md "Without a Docker engine"). The steps after that are the same.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-trainingjob}
NAMESPACE=${TJ_NAMESPACE:-trainingjob}
RELEASE=${TJ_RELEASE:-trainingjob-operator}
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' helm/trainingjob-operator/Chart.yaml)
EXAMPLE=${TJ_EXAMPLE:-manifests/examples/trainingjob-demo.yaml}
PY=${TJ_PYTHON:-.venv/bin/python}

if [[ -z "${TJ_KIND_ENGINE:-}" ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    TJ_KIND_ENGINE=docker
  else
    TJ_KIND_ENGINE=local
  fi
fi
if [[ "$TJ_KIND_ENGINE" == local ]]; then
  echo "kind-up: no Docker engine answers; starting the project's own (docs/INSTALL.md)" >&2
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "kind-up: without a Docker engine this needs root (a network namespace, mounts," \
      "cgroups); run it as root, or start Docker" >&2
    exit 1
  fi
  bash scripts/install-node-deps.sh
  [[ -x "$PY" ]] || make -s venv
  # Points docker, kind, kubectl and helm at the engine; sets TJ_KIND_NODE_IMAGE/CONFIG.
  exports=$("$PY" -m tjdevcluster.kind_cli up)
  eval "$exports"
  trap 'echo "kind-up: failed; the engine still runs: make kind-down removes it" >&2' ERR
fi

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not installed" >&2; exit 1; }
done

# The node sees ./shared-data as /shared-data (kind-config.yaml). The pods run as uid 10001,
# which is not you: let them write there (hostPath volumes get no fsGroup).
mkdir -p shared-data
chmod a+rwx shared-data

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "${TJ_KIND_CONFIG:-kind-config.yaml}" \
    ${TJ_KIND_NODE_IMAGE:+--image "$TJ_KIND_NODE_IMAGE"}
fi

if [[ "$TJ_KIND_ENGINE" == local ]]; then
  # No network in the builds: the wheels and the base come from the registries, cached.
  "$PY" -m tjdevcluster.kind_cli build-images >/dev/null
else
  docker build -f images/operator/Dockerfile -t "trainingjob-operator:$VERSION" .
  docker build -f trainer-image/Dockerfile -t "trainingjob-trainer:$VERSION" .
fi
kind load docker-image --name "$CLUSTER" "trainingjob-operator:$VERSION" "trainingjob-trainer:$VERSION"

kubectl config use-context "kind-$CLUSTER"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted
# Helm installs the CRD only on the first install; keep it current on later runs.
kubectl apply -f helm/trainingjob-operator/crds/
# The kind node also runs the control plane (about 1 CPU of requests): a trainer that asks
# for half a core (the chart's default is 1) still starts on a 2-core machine. Its threads
# follow its CPU limit, not the request.
helm upgrade --install "$RELEASE" helm/trainingjob-operator \
  --namespace "$NAMESPACE" \
  --set persistence.hostPath=/shared-data \
  --set syntheticDataset.enabled=true \
  --set trainer.resources.requests.cpu="${TJ_KIND_TRAINER_CPU:-500m}" \
  --wait --timeout 10m

kubectl apply -n "$NAMESPACE" -f "$EXAMPLE"
cat <<DONE

kind cluster "$CLUSTER" is up; the operator runs in namespace $NAMESPACE.
  kubectl get trainingjobs -n $NAMESPACE -w
  kubectl port-forward -n $NAMESPACE svc/$RELEASE-ui 8501:8501   # then http://127.0.0.1:8501
Models appear in ./shared-data/models/. \`make kind-down\` deletes the cluster.
DONE
if [[ "$TJ_KIND_ENGINE" == local ]]; then
  cat <<LOCAL
The cluster runs in the project's own engine (no Docker here). kubectl, helm, docker and
kind reach it after:  eval "\$($PY -m tjdevcluster.kind_cli env)"
LOCAL
fi
