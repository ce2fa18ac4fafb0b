"""Certificates and keys for the local control plane (ECDSA P-256, loopback only).

Development and test scaffolding: one throw-away CA per state directory signs the API
server's serving certificate and the client certificates of the admin, the
controller-manager and the pod harness. A separate key pair signs service-account
tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"
# The real node's address (``--node kubelet``): on the loopback of the cluster's own
# network namespace, never on the host.
NODE_IP = "10.200.0.1"
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of every certificate and key of one control plane."""

    ca_cert: Path
    ca_key: Path
    serving: ClientCert
    admin: ClientCert
    controller_manager: ClientCert
    harness: ClientCert
    kubelet_client: ClientCert
    sa_key: Path
    sa_pub: Path
    # The real node's credentials (used by ``--node kubelet`` only).
    node: ClientCert
    node_serving: ClientCert
    scheduler: ClientCert
    proxy: ClientCert


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _make_ca(cert_path: Path, key_path: Path) -> None:
    key = _key()
    name = _name("tj-dev-cluster-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    pki_dir: Path,
    stem: str,
    cn: str,
    org: str | None,
    server: bool,
    dns: tuple[str, ...] = (
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ),
    ips: tuple[str, ...] = ("127.0.0.1", KUBERNETES_SERVICE_IP, NODE_IP),
) -> ClientCert:
    out = ClientCert(pki_dir / f"{stem}.crt", pki_dir / f"{stem}.key")
    if out.cert.exists() and out.key.exists():
        return out
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = _builder(_name(cn, org), ca_cert.subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage([usage]), critical=False
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key, out.key)
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def ensure_pki(pki_dir: Path, node_name: str = "tj-dev-node") -> Pki:
    """Create (or reuse) the CA, certificates and service-account keys in ``pki_dir``."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    if not (ca_cert.exists() and ca_key.exists()):
        _make_ca(ca_cert, ca_key)
    sa_key, sa_pub = pki_dir / "sa.key", pki_dir / "sa.pub"
    if not (sa_key.exists() and sa_pub.exists()):
        key = _key()
        _write_key(key, sa_key)
        sa_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return Pki(
        ca_cert=ca_cert,
        ca_key=ca_key,
        serving=_issue(pki_dir, "apiserver", "kube-apiserver", None, server=True),
        admin=_issue(pki_dir, "admin", "tj-dev-admin", "system:masters", server=False),
        controller_manager=_issue(
            pki_dir, "controller-manager", "system:kube-controller-manager", None, server=False
        ),
        harness=_issue(pki_dir, "harness", "tj-pod-harness", "system:masters", server=False),
        kubelet_client=_issue(
            pki_dir,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            "system:masters",
            server=False,
        ),
        sa_key=sa_key,
        sa_pub=sa_pub,
        node=_issue(pki_dir, "node", f"system:node:{node_name}", "system:nodes", server=False),
        node_serving=_issue(
            pki_dir,
            "node-serving",
            node_name,
            None,
            server=True,
            dns=(node_name, "localhost"),
            ips=(NODE_IP, "127.0.0.1"),
        ),
        scheduler=_issue(pki_dir, "scheduler", "system:kube-scheduler", None, server=False),
        proxy=_issue(pki_dir, "kube-proxy", "system:kube-proxy", None, server=False),
    )
