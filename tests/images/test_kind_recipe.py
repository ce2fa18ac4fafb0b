"""The recipe of ``make kind-up`` without Docker, checked without root, Docker or a build:
the kindbuild module pins what gobuild pins, the component images carry the names
kubeadm v1.36 expects, the one-layer image archives, the runc wrapper, the generated kind
configuration, and scripts/kind-up.sh taking the usual path when a Docker engine answers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

from tjdevcluster import kind_cli, kindengine, kindnode, tools

ROOT = Path(__file__).resolve().parents[2]
DEVCLUSTER = ROOT / "devcluster" / "tjdevcluster"


def _replaces(go_mod: Path) -> list[str]:
    text = go_mod.read_text()
    return sorted(re.findall(r"^\s*(k8s\.io/\S+ => \S+ \S+)$", text, re.M))


def test_kindbuild_pins_the_release_of_gobuild() -> None:
    gobuild, kindbuild = DEVCLUSTER / "gobuild" / "go.mod", DEVCLUSTER / "kindbuild" / "go.mod"
    version = tools.kubernetes_version()
    pinned = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", kindbuild.read_text(), re.M)
    assert pinned and pinned.group(1) == version
    assert _replaces(kindbuild) == _replaces(gobuild)
    assert len(_replaces(kindbuild)) > 20
    assert "tool k8s.io/kubernetes/cmd/kubeadm" in kindbuild.read_text()
    assert (DEVCLUSTER / "kindbuild" / "go.sum").stat().st_size > 10_000


def test_component_images_are_named_as_kubeadm_names_them() -> None:
    refs = kindnode.component_images()
    version = tools.kubernetes_version()
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        assert refs[f"registry.k8s.io/{name}:{version}"] == name
    # etcd: the one we build, in kubeadm's "<version>-0" tag.
    assert refs[f"registry.k8s.io/etcd:{tools.etcd_version().lstrip('v')}-0"] == "etcd"
    assert refs[f"registry.k8s.io/coredns/coredns:{kindnode.COREDNS_VERSION}"] == "coredns"
    pause = f"registry.k8s.io/pause:{kindnode.PAUSE_IMAGE_TAG}"
    assert refs[pause] == "pause"
    # containerd's sandbox image is the preloaded pause image.
    assert f'sandbox_image = "{pause}"' in kindnode.containerd_config()


def test_the_node_pulls_from_nowhere_but_a_closed_local_port() -> None:
    config = kindnode.containerd_config()
    assert 'config_path = "/etc/containerd/certs.d"' in config
    hosts = kindnode.blocked_registry_hosts()
    servers = re.findall(r'"(https?://[^"]+)"', hosts)
    assert servers and all(s.startswith("http://127.0.0.1:") for s in servers)
    assert "registry.k8s.io" in kindnode.BLOCKED_REGISTRIES
    assert "docker.io" in kindnode.BLOCKED_REGISTRIES


def test_cni_config_gives_pods_the_node_range() -> None:
    conf = json.loads(kindnode.cni_config())
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False
    (subnet,) = [r["subnet"] for rng in bridge["ipam"]["ranges"] for r in rng]
    assert subnet == kindnode.NODE_POD_CIDR
    assert subnet.startswith(kindnode.POD_SUBNET.split("/")[0].rsplit(".", 2)[0])
    assert set(kindnode.CNI_PLUGINS) >= {"bridge", "host-local", "loopback", "portmap"}


def test_files_image_is_a_loadable_docker_archive(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"#!/bin/sh\necho hi\n")
    binary.chmod(0o755)
    data = tmp_path / "lib.so"
    data.write_bytes(b"\x7fELF" + b"\0" * 100)
    archive = kindnode.files_image(
        "registry.k8s.io/x:v1",
        {"/usr/local/bin/tool": binary, "/usr/lib/x86_64-linux-gnu/lib.so": data},
        {"Entrypoint": ["/usr/local/bin/tool"]},
        {"/lib": "usr/lib"},
    )
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        (entry,) = manifest
        assert entry["RepoTags"] == ["registry.k8s.io/x:v1"]
        config = json.load(outer.extractfile(entry["Config"]))  # type: ignore[arg-type]
        layer = outer.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/tool"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        members = {m.name: m for m in inner.getmembers()}
    assert members["usr/local/bin/tool"].mode == 0o755
    assert members["usr/lib/x86_64-linux-gnu/lib.so"].mode == 0o644
    assert members["lib"].issym() and members["lib"].linkname == "usr/lib"
    assert members["usr/local/bin"].isdir()
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())


def _fake_runc(tmp_path: Path) -> tuple[Path, Path]:
    record = tmp_path / "calls.json"
    fake = tmp_path / "runc"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    wrapper = tmp_path / "tj-runc"
    wrapper.write_text(kindengine.RUNC_WRAPPER.format(runc=fake))
    wrapper.chmod(0o755)
    return wrapper, record


def test_runc_wrapper_drops_cap_sys_resource_only(tmp_path: Path) -> None:
    wrapper, record = _fake_runc(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    caps = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
    spec = {"process": {"capabilities": {k: list(caps) for k in ("bounding", "effective")}}}
    (bundle / "config.json").write_text(json.dumps(spec))
    argv = ["--root", "/x", "create", "--bundle", str(bundle), "--pid-file", "p", "abc"]
    subprocess.run([str(wrapper), *argv], check=True)
    after = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    expected = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert after == {"bounding": expected, "effective": expected}
    assert json.loads(record.read_text().splitlines()[-1]) == argv  # runc got the same argv

    (bundle / "config.json").write_text(json.dumps(spec))
    subprocess.run([str(wrapper), "state", "abc"], check=True, cwd=bundle)
    assert json.loads((bundle / "config.json").read_text()) == spec  # untouched
    assert json.loads(record.read_text().splitlines()[-1]) == ["state", "abc"]

    # `docker exec --privileged`: runc exec gets a process.json of its own.
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["cat"], "capabilities": {"bounding": list(caps)}}))
    exec_argv = ["--root", "/x", "exec", "--process", str(process), "--detach", "abc"]
    subprocess.run([str(wrapper), *exec_argv], check=True)
    assert json.loads(process.read_text())["capabilities"] == {"bounding": expected}
    assert json.loads(record.read_text().splitlines()[-1]) == exec_argv


def test_local_kind_config_keeps_the_cluster_and_adds_what_the_node_needs(
    tmp_path: Path,
) -> None:
    config = kind_cli.local_kind_config(ROOT / "kind-config.yaml", port=17001)
    source = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["name"] == source["name"]
    (node,) = config["nodes"]  # type: ignore[index]
    (mount,) = node["extraMounts"]
    assert mount["hostPath"] == str(ROOT / "shared-data")
    assert mount["containerPath"] == "/shared-data"
    net = config["networking"]
    assert net["disableDefaultCNI"] is True  # type: ignore[index]
    assert net["kubeProxyMode"] == "nftables"  # type: ignore[index]
    assert net["apiServerAddress"] == "127.0.0.1"  # type: ignore[index]
    assert net["apiServerPort"] == 17001  # type: ignore[index]
    patches = [yaml.safe_load(p) for p in config["kubeadmConfigPatches"]]  # type: ignore[union-attr]
    kubelet = next(p for p in patches if p["kind"] == "KubeletConfiguration")
    assert kubelet["failCgroupV1"] is False
    proxy = next(p for p in patches if p["kind"] == "KubeProxyConfiguration")
    assert proxy["nftables"]["masqueradeAll"] is True


def test_node_image_is_keyed_by_version_and_recipe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TJ_CACHE_DIR", str(tmp_path))
    folder = kindnode.node_dir()
    assert folder.parent == tmp_path / "kind"
    assert folder.name.startswith(f"node-{tools.kubernetes_version()}-")
    assert kindnode.node_image_ref().startswith("localhost/tj-kind-node:")
    assert kindnode.find_node_tarball() is None
    assert kindnode.kind_tool().path == tmp_path / "tools" / "kind-v0.33.0" / "kind"
    assert not kindnode.kind_tool().is_complete()
    # kind's entries are not part of the tools that `tjctl cluster-tools` builds.
    assert "kind" not in tools.expected_paths().as_dict()
    assert "kubeadm" not in tools.expected_paths().as_dict()


def test_kind_cli_env_says_when_no_engine_runs() -> None:
    cache = tempfile.mkdtemp(prefix="tjk-", dir="/tmp")  # short: the engine's socket paths
    env = dict(os.environ, TJ_CACHE_DIR=cache)
    result = subprocess.run(
        [sys.executable, "-m", "tjdevcluster.kind_cli", "env"],
        env=env,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(cache)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""


def _fake_tools(bin_dir: Path, record: Path, docker_info_rc: int) -> None:
    bin_dir.mkdir()
    for name in ("docker", "kind", "kubectl", "helm"):
        script = bin_dir / name
        rc = docker_info_rc if name == "docker" else 0
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{name} $*" >> {record}\n'
            f'if [ "$1" = info ]; then exit {rc}; fi\n'
            'if [ "$1" = apply ]; then cat >/dev/null; fi\n'
            'if [ "$1 $2" = "create namespace" ]; then echo "kind: Namespace"; fi\n'
            "exit 0\n"
        )
        script.chmod(0o755)


def test_kind_up_with_a_docker_engine_is_the_usual_path(tmp_path: Path) -> None:
    """When ``docker info`` answers, kind-up uses kind-config.yaml and kind's own node image,
    builds with ``docker build`` and never starts the project's engine."""
    record = tmp_path / "calls"
    _fake_tools(tmp_path / "bin", record, docker_info_rc=0)
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TJ_PYTHON": str(tmp_path / "no-python"),  # would fail if the local path ran
    }
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kind-up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    calls = record.read_text().splitlines()
    assert "kind create cluster --name trainingjob --config kind-config.yaml" in calls
    assert "docker build -f images/operator/Dockerfile -t trainingjob-operator:0.1.0 ." in calls
    assert "docker build -f trainer-image/Dockerfile -t trainingjob-trainer:0.1.0 ." in calls
    assert (
        "kind load docker-image --name trainingjob trainingjob-operator:0.1.0 "
        "trainingjob-trainer:0.1.0"
    ) in calls
    assert not any("--image" in call for call in calls)
    assert "no Docker engine" not in result.stderr


def test_kind_up_without_docker_and_without_root_says_why(tmp_path: Path) -> None:
    """No Docker engine answers and the user is not root: kind-up stops at once, saying
    what the local engine needs, before installing or starting anything."""
    record = tmp_path / "calls"
    _fake_tools(tmp_path / "bin", record, docker_info_rc=1)
    fake_id = tmp_path / "bin" / "id"
    fake_id.write_text(f'#!/bin/sh\necho "id $*" >> {record}\necho 1000\n')
    fake_id.chmod(0o755)
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TJ_PYTHON": str(tmp_path / "no-python"),
    }
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kind-up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr
    assert "needs root" in result.stderr
    calls = record.read_text().splitlines()
    assert calls == ["docker info", "id -u"]  # nothing else ran
