#!/usr/bin/env bash
# `make kind-up`: a kind cluster with the TrainingJob operator installed by its Helm chart,
# a synthetic dataset and one example TrainingJob. Needs docker, kind, kubectl and helm.
# Run from anywhere; works in the repository root. Idempotent: run it again after a change
# to rebuild and reload the images and upgrade the release.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-trainingjob}
NAMESPACE=${TJ_NAMESPACE:-trainingjob}
RELEASE=${TJ_RELEASE:-trainingjob-operator}
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' helm/trainingjob-operator/Chart.yaml)
EXAMPLE=${TJ_EXAMPLE:-manifests/examples/trainingjob-demo.yaml}

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not installed" >&2; exit 1; }
done

# The node sees ./shared-data as /shared-data (kind-config.yaml). The pods run as uid 10001,
# which is not you: let them write there (hostPath volumes get no fsGroup).
mkdir -p shared-data
chmod a+rwx shared-data

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config kind-config.yaml
fi

docker build -f images/operator/Dockerfile -t "trainingjob-operator:$VERSION" .
docker build -f trainer-image/Dockerfile -t "trainingjob-trainer:$VERSION" .
kind load docker-image --name "$CLUSTER" "trainingjob-operator:$VERSION" "trainingjob-trainer:$VERSION"

kubectl config use-context "kind-$CLUSTER"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted
# Helm installs the CRD only on the first install; keep it current on later runs.
kubectl apply -f helm/trainingjob-operator/crds/
helm upgrade --install "$RELEASE" helm/trainingjob-operator \
  --namespace "$NAMESPACE" \
  --set persistence.hostPath=/shared-data \
  --set syntheticDataset.enabled=true \
  --wait --timeout 10m

kubectl apply -n "$NAMESPACE" -f "$EXAMPLE"
cat <<DONE

kind cluster "$CLUSTER" is up; the operator runs in namespace $NAMESPACE.
  kubectl get trainingjobs -n $NAMESPACE -w
  kubectl port-forward -n $NAMESPACE svc/$RELEASE-ui 8501:8501   # then http://127.0.0.1:8501
Models appear in ./shared-data/models/. \`make kind-down\` deletes the cluster.
DONE
