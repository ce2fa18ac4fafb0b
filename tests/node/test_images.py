"""``tjctl images build``: the trainer, operator and PostgreSQL images built here with no
network, in the project's own dockerd, and what they are: sizes, user, read-only runs, no
NVIDIA wheels, a PostgreSQL server that takes password logins, nothing of this machine
inside, the host's network untouched, and the streamed load into a containerd.

Independent of the node tier's cluster fixture: builds (or finds cached) images itself.
Needs root; a build that cannot run fails every test with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tjdevcluster import dockerd, netns
from tjdevcluster.imagecache import ImagesError, cache_root
from tjdevcluster.images import SIZE_LIMITS, ImageInfo, build_images, image_ref, load_images

pytestmark = pytest.mark.node

TJCTL = Path(sys.executable).parent / "tjctl"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
# Host paths a dockerd/containerd may create; none may stay behind after a build.
HOST_PATHS = (Path("/etc/docker/key.json"), Path("/run/docker"))


def _log(message: str) -> None:
    print(message, flush=True)


def _iptables() -> dict[str, str]:
    iptables = shutil.which("iptables") or "/usr/sbin/iptables"
    return {
        table: subprocess.run(
            [iptables, "-t", table, "-S"], capture_output=True, text=True, check=True
        ).stdout
        for table in ("filter", "nat")
    }


def _host_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _our_processes() -> list[str]:
    marker = str(cache_root() / "docker")
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd:
                found.append(cmd)
    return found


def _our_mounts() -> list[str]:
    prefix = str(cache_root())
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(prefix)]


@dataclass
class Built:
    """The result of one build_images() and the host around it."""

    images: dict[str, ImageInfo]
    iptables_before: dict[str, str]
    iptables_after: dict[str, str]
    links_after: list[str]
    ip_forward_after: str
    leftovers: dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def built() -> Built:
    """Both images built (or found cached) the way `tjctl images build` does, engine
    started and stopped inside; the host's network looked at before and after."""
    if os.geteuid() != 0:
        pytest.fail("tjctl images build needs root", pytrace=False)
    before = _iptables()
    existed = {str(path): path.exists() for path in HOST_PATHS}
    try:
        images = build_images(_log)
    except ImagesError as exc:
        pytest.fail(f"the images could not be built: {exc}", pytrace=False)
    leftovers: dict[str, object] = {
        "netns tj-images": netns.exists(dockerd.NETNS),
        "processes": _our_processes(),
        "mounts": _our_mounts(),
        **{p: Path(p).exists() for p, was in existed.items() if not was},
    }
    return Built(images, before, _iptables(), _host_links(), netns.host_ip_forward(), leftovers)


@pytest.fixture
def engine(built: Built) -> Iterator[dockerd.Dockerd]:
    """The private dockerd, up for one test (it holds a lock: never across tests)."""
    with dockerd.running(_log) as running:
        yield running


def _run(engine: dockerd.Dockerd, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker run`` as the chart runs the pods: no network, read-only root, uid 10001."""
    return engine.run(
        "run", "--rm", "--network=none", "--read-only", "--user", "10001", *args, check=False
    )


def test_sizes_are_under_the_targets(built: Built) -> None:
    for name, info in built.images.items():
        assert info.ref == image_ref(name)
        assert info.ref.startswith("localhost/trainingjob-") and info.ref.endswith(":0.1.0")
        assert 50_000_000 < info.size_bytes <= SIZE_LIMITS[name], (name, info.size_bytes)
    assert set(built.images) == {"trainer", "operator", "postgres"}


def test_build_leaves_nothing_running_mounted_or_behind(built: Built) -> None:
    assert built.leftovers == {
        "netns tj-images": False,
        "processes": [],
        "mounts": [],
        **{k: False for k in built.leftovers if k.startswith("/")},
    }


def test_host_network_is_untouched_by_a_build(built: Built) -> None:
    assert built.ip_forward_after == "0"
    for table, rules in built.iptables_after.items():
        assert "DOCKER" not in rules, (table, rules)
        assert rules == built.iptables_before[table]
    assert "docker0" not in built.links_after


def test_host_network_is_untouched_while_the_engine_runs(engine: dockerd.Dockerd) -> None:
    assert netns.host_ip_forward() == "0"
    assert all("DOCKER" not in rules for rules in _iptables().values())
    assert "docker0" not in _host_links()
    assert netns.default_routes(dockerd.NETNS) == []
    info = json.loads(engine.run("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"].startswith(str(cache_root()))


def test_trainer_imports_and_trains_read_only_as_10001(
    built: Built, engine: dockerd.Dockerd
) -> None:
    code = (
        "import os, xgboost, optuna, tjtrainer, numpy as np\n"
        "d = xgboost.DMatrix(np.arange(400.0).reshape(100, 4), label=np.arange(100.0))\n"
        "booster = xgboost.train({'nthread': 1, 'max_depth': 2}, d, num_boost_round=5)\n"
        "print(os.getuid(), xgboost.__version__, len(booster.predict(d)))"
    )
    result = _run(engine, "--entrypoint", "python", built.images["trainer"].ref, "-c", code)
    assert result.returncode == 0, result.stderr
    uid, version, predictions = result.stdout.split()
    assert (uid, predictions) == ("10001", "100")
    assert version == _pinned("xgboost")


def _pinned(name: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "images" / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(name)}==(\S+)(?: --hash=sha256:[0-9a-f]{{64}})+$", text, re.M)
    assert match, name
    return match.group(1)


def test_trainer_has_xgboost_cpu_and_no_nvidia_packages(
    built: Built, engine: dockerd.Dockerd
) -> None:
    ref = built.images["trainer"].ref
    result = _run(
        engine,
        "--entrypoint",
        "python",
        ref,
        "-m",
        "pip",
        "list",
        "--disable-pip-version-check",
        "--format=json",
    )
    assert result.returncode == 0, result.stderr
    dists = {d["name"].lower(): d["version"] for d in json.loads(result.stdout)}
    assert [name for name in dists if "nvidia" in name] == []
    assert "xgboost" not in dists
    assert dists["xgboost-cpu"] == _pinned("xgboost")
    assert dists["trainingjob-operator"] == "0.1.0"
    assert "setuptools" not in dists and "wheel" not in dists


def test_trainer_entrypoint_is_the_trainer_cli(built: Built, engine: dockerd.Dockerd) -> None:
    ref = built.images["trainer"].ref
    result = _run(engine, ref)  # CMD ["--help"]
    assert result.returncode == 0, result.stderr
    assert "usage: python -m tjtrainer" in result.stdout and "train" in result.stdout


def test_operator_image_runs_tjctl_help(built: Built, engine: dockerd.Dockerd) -> None:
    ref = built.images["operator"].ref
    result = _run(engine, ref, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tjctl")
    for command in ("operator", "ui", "run", "jobs"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    code = "import streamlit, kopf, kubernetes.client, pyarrow, tjoperator.handlers, tjui.data"
    imports = _run(engine, "--entrypoint", "python", ref, "-c", code)
    assert imports.returncode == 0, imports.stderr


def test_images_keep_user_entrypoint_and_command(built: Built, engine: dockerd.Dockerd) -> None:
    expected = {
        "trainer": ("10001:10001", ["python", "-m", "tjtrainer"], ["--help"]),
        "operator": (
            "10001:10001",
            ["tjctl"],
            ["operator", "--liveness=http://0.0.0.0:8080/healthz"],
        ),
        "postgres": ("999:999", ["tj-postgres-entrypoint"], ["postgres"]),
    }
    for name, info in built.images.items():
        config = json.loads(
            engine.run("image", "inspect", "-f", "{{json .Config}}", info.ref).stdout
        )
        assert (config["User"], config["Entrypoint"], config["Cmd"]) == expected[name]


# -- the chart's PostgreSQL --------------------------------------------------------------------
def _postgres(engine: dockerd.Dockerd, ref: str, *env: str) -> str:
    """A server container as the chart runs it: no network, read-only root, uid 999, its
    data, socket and /tmp folders writable (the pod's volume and emptyDirs); its id."""
    writable = ("/tmp", "/var/run/postgresql", "/var/lib/postgresql/data")
    mounts = [arg for path in writable for arg in ("--tmpfs", f"{path}:uid=999,gid=999")]
    argv = ["run", "-d", "--network=none", "--read-only", "--user", "999", *mounts]
    for pair in env:
        argv += ["-e", pair]
    return str(engine.run(*argv, ref).stdout.strip())


def _psql(
    engine: dockerd.Dockerd, container: str, password: str, sql: str
) -> subprocess.CompletedProcess[str]:
    return engine.run(
        "exec", "-e", f"PGPASSWORD={password}", container,
        "psql", "-h", "127.0.0.1", "-U", "tj", "-d", "trainingjobs", "-w", "-Atc", sql,
        check=False,
    )  # fmt: skip


def test_postgres_starts_and_takes_a_password_login_on_loopback(
    built: Built, engine: dockerd.Dockerd
) -> None:
    ref = built.images["postgres"].ref
    container = _postgres(
        engine, ref, "POSTGRES_USER=tj", "POSTGRES_DB=trainingjobs", "POSTGRES_PASSWORD=s3cret"
    )
    try:
        ready = ["exec", container, "pg_isready", "-h", "127.0.0.1", "-U", "tj"]
        wait_for_ready = time.monotonic() + 60
        while engine.run(*ready, check=False).returncode != 0:
            logs = engine.run("logs", container, check=False)
            assert time.monotonic() < wait_for_ready, logs.stdout + logs.stderr
            time.sleep(0.5)
        login = _psql(
            engine, container, "s3cret", "select current_user, current_database(), version()"
        )
        assert login.returncode == 0, login.stderr
        user, database, version = login.stdout.strip().split("|")
        assert (user, database) == ("tj", "trainingjobs")
        assert version.startswith("PostgreSQL 15.")
        wrong = _psql(engine, container, "wrong", "select 1")
        assert wrong.returncode != 0
        assert 'password authentication failed for user "tj"' in wrong.stderr
        # The server is PID 1, runs as 999, and its environment no longer holds the password.
        proc = engine.run(
            "exec", container, "sh", "-c",
            "grep ^Uid: /proc/1/status; tr '\\0' ' ' < /proc/1/cmdline; echo; "
            "tr '\\0' '\\n' < /proc/1/environ",
        ).stdout  # fmt: skip
        uid_line, cmdline, *environ = proc.splitlines()
        assert uid_line.split()[1:] == ["999"] * 4
        assert cmdline.startswith("postgres -D /var/lib/postgresql/data/pgdata")
        assert [var for var in environ if "s3cret" in var or "PASSWORD" in var] == []
    finally:
        engine.run("rm", "-f", container, check=False)


def test_postgres_without_a_password_says_so(built: Built, engine: dockerd.Dockerd) -> None:
    container = _postgres(engine, built.images["postgres"].ref, "POSTGRES_USER=tj")
    try:
        code = engine.run("wait", container).stdout.strip()
        logs = engine.run("logs", container)
    finally:
        engine.run("rm", "-f", container, check=False)
    assert code == "1"
    assert logs.stderr.strip().splitlines() == [
        "error: POSTGRES_PASSWORD is empty; set it (the chart takes it from the Secret "
        "<release>-postgresql)"
    ]


# -- nothing of this machine inside ------------------------------------------------------------
def _host_needles() -> dict[str, bytes]:
    """Strings that only this machine's configuration holds."""
    needles = {"/opt/wheels (host PIP_FIND_LINKS)": b"/opt/wheels"}
    for path in sorted(LOCAL_CAS.glob("*.crt")):
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("-----")]
        if len(lines) > 6:
            needles[f"CA {path.name}"] = lines[len(lines) // 2].encode()
    pip_config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    for line in pip_config.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if re.search(r"(index-url|extra-index-url|trusted-host|find-links)$", key) and value:
            needles[f"pip {key}"] = value.encode()
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_FIND_LINKS"):
        if os.environ.get(var):
            needles[var] = os.environ[var].encode()
    return needles


@dataclass
class Scan:
    """What an image's exported file system holds that it must not."""

    env: list[str]
    pip_configs: list[str] = field(default_factory=list)
    host_ca_bundle: list[str] = field(default_factory=list)
    needles: dict[str, list[str]] = field(default_factory=dict)
    etc_host_addresses: list[str] = field(default_factory=list)
    sources_list: str = ""
    resolv_conf: bytes | None = None
    files: int = 0


def _scan(engine: dockerd.Dockerd, ref: str) -> Scan:
    env = json.loads(engine.run("image", "inspect", "-f", "{{json .Config.Env}}", ref).stdout)
    scan = Scan(env=env)
    ca_bytes = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
    ca_sha = hashlib.sha256(ca_bytes).hexdigest()
    needles = _host_needles()
    addresses = re.findall(
        r"inet6? ([0-9a-f.:]+)/",
        subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout,
    )
    addresses = [a for a in addresses if not a.startswith(("127.", "::1", "fe80"))]
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""
    container = engine.run("create", ref).stdout.strip()
    try:
        export = subprocess.Popen(
            engine.argv("export", container), env=engine.env, stdout=subprocess.PIPE
        )
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if re.search(r"(^|/)pip\.(conf|ini)$", name):
                    scan.pip_configs.append(name)
                if not member.isfile():
                    continue
                scan.files += 1
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                if member.size == len(ca_bytes) and hashlib.sha256(data).hexdigest() == ca_sha:
                    scan.host_ca_bundle.append(name)
                for what, needle in needles.items():
                    if needle in data:
                        scan.needles.setdefault(what, []).append(name)
                if name.startswith("etc/"):
                    text = data.decode(errors="replace")
                    for address in addresses:
                        if re.search(rf"(?<![\w.:]){re.escape(address)}(?![\w.:])", text):
                            scan.etc_host_addresses.append(f"{name}: {address}")
                    if (
                        name in ("etc/hosts", "etc/hostname")
                        and hostname
                        and re.search(rf"(?<![\w.-]){re.escape(hostname)}(?![\w.-])", text)
                    ):
                        scan.etc_host_addresses.append(f"{name}: hostname {hostname}")
                if name == "etc/apt/sources.list":
                    scan.sources_list = data.decode()
                if name == "etc/resolv.conf":
                    scan.resolv_conf = data
        assert export.wait() == 0
    finally:
        engine.run("rm", container, check=False)
    return scan


@pytest.fixture(scope="module")
def scans(built: Built) -> dict[str, Scan]:
    """Both images exported (docker export | tar) and read file by file."""
    with dockerd.running(_log) as running:
        return {name: _scan(running, info.ref) for name, info in built.images.items()}


@pytest.mark.parametrize("name", ["trainer", "operator", "postgres"])
def test_nothing_of_this_machine_is_inside(scans: dict[str, Scan], name: str) -> None:
    scan = scans[name]
    assert scan.files > 1000  # the whole file system was read
    host_vars = re.compile(r"^(PIP_|REQUESTS_CA_BUNDLE|SSL_CERT_|CURL_CA_BUNDLE|\w*_proxy=)", re.I)
    assert [var for var in scan.env if host_vars.match(var)] == []
    assert scan.pip_configs == []
    assert scan.host_ca_bundle == []
    assert scan.needles == {}
    assert scan.etc_host_addresses == []
    assert scan.sources_list == "deb http://deb.debian.org/debian bookworm main\n"
    host_resolv = Path("/etc/resolv.conf")
    if scan.resolv_conf and host_resolv.exists():
        assert scan.resolv_conf != host_resolv.read_bytes()


# -- the command line --------------------------------------------------------------------------
def test_cli_warm_build_prints_json(built: Built) -> None:
    start = time.monotonic()
    result = subprocess.run(
        [str(TJCTL), "images", "build", "--only", "operator", "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    operator = out["images"]["operator"]
    assert list(out["images"]) == ["operator"] and out["loaded"] is False
    assert operator["ref"] == image_ref("operator")
    assert operator["size_bytes"] <= SIZE_LIMITS["operator"]
    assert "docker build localhost/trainingjob-operator:0.1.0" in result.stderr
    assert out["seconds"] <= time.monotonic() - start


def test_cli_load_without_a_node_says_how_to_start_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(TJCTL), "images", "build", "--load", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "start it with tjctl dev-cluster up --node kubelet" in result.stderr
    assert str(tmp_path) in result.stderr
    assert "Traceback" not in result.stderr


# -- load into a containerd --------------------------------------------------------------------
@pytest.fixture
def scratch_containerd(tmp_path: Path) -> Iterator[Path]:
    """A containerd of its own (own root, state and socket) in a namespace of its own."""
    name = "tj-images-test"
    root = tmp_path / "ctd"
    root.mkdir()
    socket = root / "ctd.sock"
    config = root / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{root / "root"}"\nstate = "{root / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
    )
    netns.create(name)
    with open(root / "containerd.log", "wb") as out:
        proc = subprocess.Popen(
            netns.wrap(name, ["containerd", "--config", str(config)]),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (
                root / "containerd.log"
            ).read_text()
            time.sleep(0.1)
        yield socket
    finally:
        proc.terminate()
        proc.wait(30)
        netns.delete(name)


def _ctr(socket: Path, *args: str) -> str:
    return subprocess.run(
        ["ctr", "--address", str(socket), "-n", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_load_streams_an_image_into_containerd(
    built: Built, engine: dockerd.Dockerd, scratch_containerd: Path
) -> None:
    ref = built.images["operator"].ref
    assert ref not in _ctr(scratch_containerd, "images", "ls", "-q").split()
    load_images(scratch_containerd, [ref], _log, engine)
    assert ref in _ctr(scratch_containerd, "images", "ls", "-q").split()
    check = _ctr(scratch_containerd, "images", "check", f"name=={ref}")
    assert "complete" in check, check


def test_load_without_a_socket_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImagesError, match="start it with tjctl dev-cluster up --node kubelet"):
        load_images(tmp_path / "node" / "containerd.sock", [image_ref("trainer")], _log)
