"""Local Kubernetes control plane and pod harness: development and test scaffolding.

Never a way to run production work. See docs/DEV_CLUSTER.md. Parts:

- tools: build/find pinned etcd, kube-apiserver, kube-controller-manager, kubectl, helm
- controlplane: start/stop them on loopback with TLS, RBAC and service-account keys
- harness: a stand-in kubelet that runs pods' containers as local processes
- cli: ``tjctl dev-cluster up|down|status|kubeconfig`` and ``tjctl cluster-tools``
"""

from .podspec import pvc_dir

__all__ = ["pvc_dir"]
