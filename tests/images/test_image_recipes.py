"""The recipes behind ``tjctl images build`` that need neither root nor Docker: the
requirements the Dockerfiles install, wheel stripping, the base image's cleaning, the
build context, the venv slimming and the cache stamps."""

from __future__ import annotations

import base64
import csv
import ctypes
import hashlib
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tjdevcluster import baseimage, dockerd, imagecache, images, wheelhouse

ROOT = Path(__file__).resolve().parents[2]


def _requirements(*args: str) -> list[str]:
    argv = [sys.executable, str(ROOT / "images" / "requirements.py"), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def test_trainer_requirements_swap_xgboost_for_xgboost_cpu_with_the_same_specifier() -> None:
    reqs = _requirements("trainer", "--replace", "xgboost=xgboost-cpu")
    assert "xgboost-cpu>=2.1,<4" in reqs
    assert not [r for r in reqs if r.startswith("xgboost") and not r.startswith("xgboost-cpu")]
    assert {"optuna>=4.0,<6", "sqlalchemy>=2.0,<3"} <= set(reqs)  # extra + base deps


def test_the_all_extra_expands_the_projects_own_extras_once() -> None:
    reqs = _requirements("all")
    assert "kopf>=1.37,<2" in reqs and "streamlit>=1.40,<2" in reqs and "xgboost>=2.1,<4" in reqs
    assert len(reqs) == len(set(reqs))
    assert not [r for r in reqs if r.startswith("trainingjob-operator")]


def test_an_unknown_extra_is_refused() -> None:
    argv = [sys.executable, str(ROOT / "images" / "requirements.py"), "nope"]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode != 0 and "no extra 'nope'" in result.stderr


def _pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (version, sha256 hashes) of a pin file (one line a pin)."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            pin, *options = line.split()
            name, version = pin.split("==")
            found[name] = (version, [o.removeprefix("--hash=sha256:") for o in options])
    return found


def test_constraints_pin_xgboost_cpu_to_the_xgboost_release() -> None:
    pins = _pins(ROOT / "images" / "constraints.txt")
    assert pins["xgboost-cpu"][0] == pins["xgboost"][0]


def test_every_pin_of_the_images_and_of_the_test_environment_has_its_hashes() -> None:
    for path in (ROOT / "images" / "constraints.txt", ROOT / "requirements-dev.lock"):
        pins = _pins(path)
        assert {"pip", "setuptools", "wheel"} <= pins.keys(), path
        for name, (_, hashes) in pins.items():
            assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (path, name)
    lock = (ROOT / "requirements-dev.lock").read_text()
    covered = re.search(r"^# interpreters: (.*) \(", lock, re.M)
    assert covered and f"cp{sys.version_info[0]}{sys.version_info[1]}" in covered.group(1).split()
    # The test environment is what the tests run in: every locked version is installed.
    from importlib import metadata

    for name, (version, _) in _pins(ROOT / "requirements-dev.lock").items():
        if name not in ("pip", "setuptools", "wheel"):
            assert metadata.version(name) == version, name


def test_pip_refuses_a_wheel_that_is_not_the_one_pinned(tmp_path: Path) -> None:
    """The wheel folder's own constraints (the offline builds' --require-hashes input):
    real pip, no index, installs a wheel that matches and refuses one altered since."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    wheel = _pure_wheel(folder)
    constraints = wheelhouse.write_local_constraints(folder)
    assert constraints.read_text().startswith("demo-pure==1.0 --hash=sha256:")

    def install() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                "--find-links", str(folder), "--require-hashes", "--target", str(tmp_path / "t"),
                "-c", str(constraints), "-r", str(tmp_path / "req.txt")]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True)

    (tmp_path / "req.txt").write_text("demo-pure\n")
    assert install().returncode == 0, install().stderr
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("demo_pure/planted.py", "import os\n")
    refused = install()
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr


def _pure_wheel(folder: Path) -> Path:
    wheel = folder / "demo_pure-1.0-py3-none-any.whl"
    info = "demo_pure-1.0.dist-info"
    files = {
        "demo_pure/__init__.py": b"x = 1\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: demo-pure\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
            for name, data in files.items()
        )
        + f"{info}/RECORD,,\n"
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", record)
    return wheel


# -- wheels ----------------------------------------------------------------------------------
def _extension() -> Path:
    """A real ELF extension module of this interpreter's environment, not stripped."""
    site = Path(sysconfig.get_paths()["platlib"])
    found = sorted(site.glob("yaml/_yaml.cpython-*.so")) or sorted(site.glob("*/*.cpython-*.so"))
    assert found, "no extension module to test with"
    return found[0]


def _wheel(tmp: Path, library: Path) -> Path:
    wheel = tmp / "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    files = {"demo/__init__.py": b"x = 1\n", f"demo/{library.name}": library.read_bytes()}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow(["demo-1.0.dist-info/RECORD", "", ""])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("demo-1.0.dist-info/RECORD", record.getvalue())
    return wheel


def test_strip_wheel_shrinks_libraries_and_rewrites_record(tmp_path: Path) -> None:
    strip = shutil.which("strip")
    if strip is None:
        pytest.skip("binutils' strip is not installed")
    library = _extension()
    wheel = _wheel(tmp_path, library)
    saved = wheelhouse.strip_wheel(wheel, strip, tmp_path)
    assert saved > 0
    with zipfile.ZipFile(wheel) as archive:
        stripped = archive.read(f"demo/{library.name}")
        assert archive.read("demo/__init__.py") == b"x = 1\n"
        rows = list(csv.reader(io.StringIO(archive.read("demo-1.0.dist-info/RECORD").decode())))
    assert len(stripped) == len(library.read_bytes()) - saved
    assert wheelhouse.elf_loads_aligned(stripped)
    for name, digest, size in rows[:-1]:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(name)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert (digest, int(size)) == (f"sha256={expected.decode()}", len(data))
    loaded = tmp_path / library.name
    loaded.write_bytes(stripped)
    ctypes.CDLL(str(loaded))  # still loads


def test_misaligned_load_segments_are_detected() -> None:
    data = bytearray(_extension().read_bytes())
    assert wheelhouse.elf_loads_aligned(bytes(data))
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for index in range(phnum):
        at = phoff + index * phentsize
        if struct.unpack_from("<I", data, at)[0] == 1:  # PT_LOAD: p_offset += 1
            struct.pack_into("<Q", data, at + 8, struct.unpack_from("<Q", data, at + 8)[0] + 1)
            break
    assert not wheelhouse.elf_loads_aligned(bytes(data))
    assert not wheelhouse.elf_loads_aligned(b"not an elf file at all" * 4)


# -- base image ------------------------------------------------------------------------------
def test_debian_mirror_comes_from_apts_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert baseimage.debian_mirror(tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert baseimage.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://legacy.example/debian bookworm main\n"
    )
    assert baseimage.debian_mirror(tmp_path) == "http://legacy.example/debian"


def _fake_rootfs(root: Path) -> None:
    for name in ("usr/bin/python3", "usr/bin/python", "usr/sbin/useradd", "usr/sbin/groupadd"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    for name, text in {
        "etc/resolv.conf": "nameserver 192.0.2.53\n",
        "etc/hostname": "build-host\n",
        "etc/apt/sources.list": "deb http://mirror.example/debian bookworm main\n",
        "var/lib/apt/lists/mirror.example_dists_bookworm_Release": "x",
        "var/log/bootstrap.log": "x",
        "usr/share/doc/bash/copyright": "GPL",
        "usr/share/doc/bash/README": "long",
        "usr/share/man/man1/bash.1.gz": "x",
        "usr/share/locale/de/LC_MESSAGES/bash.mo": "x",
        "root/.bash_history": "secret",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "etc/apt/apt.conf.d").mkdir(parents=True)


def test_clean_rootfs_removes_this_machine_and_the_docs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir(mode=0o700)
    _fake_rootfs(root)
    baseimage.clean_rootfs(root)
    assert root.stat().st_mode & 0o777 == 0o755
    assert not (root / "etc/resolv.conf").exists() and not (root / "etc/hostname").exists()
    sources = (root / "etc/apt/sources.list").read_text()
    assert sources == "deb http://deb.debian.org/debian bookworm main\n"
    assert list((root / "var/lib/apt/lists").iterdir()) == [root / "var/lib/apt/lists/partial"]
    assert not list((root / "var/log").iterdir())
    assert (root / "usr/share/doc/bash/copyright").exists()
    assert not (root / "usr/share/doc/bash/README").exists()
    assert not list((root / "usr/share/man").iterdir())
    assert not list((root / "usr/share/locale").iterdir())
    assert not (root / "root/.bash_history").exists()
    assert "path-exclude /usr/share/man/*" in (root / "etc/dpkg/dpkg.cfg.d/docker-slim").read_text()


def test_clean_rootfs_refuses_a_root_without_python(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    _fake_rootfs(root)
    (root / "usr/bin/python3").unlink()
    with pytest.raises(imagecache.ImagesError, match="no /usr/bin/python3"):
        baseimage.clean_rootfs(root)


# -- build context, slimming, cache ----------------------------------------------------------
def test_build_context_holds_the_allowed_files_and_the_wheels(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"PK")
    context = tmp_path / "context"
    images.assemble_context(context, wheels)
    top = sorted(p.name for p in context.iterdir())
    assert top == sorted(
        [
            ".dockerignore",
            "README.md",
            "cli",
            "contract",
            "core",
            "images",
            "operator",
            "pyproject.toml",
            "trainer-image",
            "ui",
        ]
    )
    assert (context / "trainer-image/Dockerfile").is_file()
    assert (context / "images/operator/Dockerfile").is_file()
    assert (context / "images/requirements.py").is_file()
    wheel = context / "images/wheels/demo-1.0-py3-none-any.whl"
    assert wheel.read_bytes() == b"PK"
    assert not list(context.rglob("__pycache__")) and not list(context.rglob("*.egg-info"))
    assert not (context / "tests").exists() and not (context / "helm").exists()
    assert not (context / "devcluster").exists()  # test scaffolding, never in an image


def test_slim_venv_removes_what_is_never_imported_and_links_copies(tmp_path: Path) -> None:
    site = tmp_path / "venv/lib/python3.11/site-packages"
    files = {
        "pandas/__init__.py": b"",
        "pandas/tests/test_x.py": b"",
        "pandas/core/__pycache__/x.cpython-311.pyc": b"",
        "pandas/core/frame.pyi": b"",
        "pydeck/static/index.js.map": b"",
        "pydeck/static/index.js": b"js",
        "pyarrow/include/arrow/api.h": b"",
        "pyarrow/lib.pyx": b"",
        "pyarrow/libarrow_python.so": b"\x7fELF" + b"1" * 70000,
        "pyarrow/libarrow_python.so.2600": b"\x7fELF" + b"1" * 70000,
        "kubernetes/aio/client.py": b"",
        "kubernetes/client/api.py": b"",
        "other/tests/keep.py": b"",
    }
    for name, data in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    script = ROOT / "images" / "slim-venv.py"
    argv = [sys.executable, str(script), str(tmp_path / "venv"), "--drop", "kubernetes/aio"]
    subprocess.run(argv, check=True, capture_output=True)
    left = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert left == [
        "kubernetes/client/api.py",
        "other/tests/keep.py",
        "pandas/__init__.py",
        "pyarrow/libarrow_python.so",
        "pyarrow/libarrow_python.so.2600",
        "pydeck/static/index.js",
    ]
    a, b = site / "pyarrow/libarrow_python.so", site / "pyarrow/libarrow_python.so.2600"
    assert os.stat(a).st_ino == os.stat(b).st_ino
    bad = subprocess.run([*argv[:3], "--drop", "nothing/here"], capture_output=True, text=True)
    assert bad.returncode != 0 and "matches nothing" in bad.stderr


def test_cache_entries_count_only_when_stamped_with_the_same_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TJ_CACHE_DIR", str(tmp_path))
    folder = imagecache.cache_root() / "wheels-aaa"
    folder.mkdir(parents=True)
    assert not imagecache.is_complete(folder, "recipe 1")  # interrupted: no stamp
    imagecache.mark_complete(folder, "recipe 1")
    assert imagecache.is_complete(folder, "recipe 1")
    assert not imagecache.is_complete(folder, "recipe 2")
    (imagecache.cache_root() / "wheels-bbb").mkdir()
    (imagecache.cache_root() / "base-bookworm-ccc").mkdir()
    imagecache.remove_stale(folder)
    assert sorted(p.name for p in imagecache.cache_root().iterdir()) == [
        "base-bookworm-ccc",
        "wheels-aaa",
    ]


def test_a_disk_too_full_for_a_build_is_refused_early(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(imagecache.ImagesError, match="disk full"):
        imagecache.check_free_space(tmp_path, need=free * 2)


# -- errors ----------------------------------------------------------------------------------
def test_a_missing_program_names_the_packages_to_install() -> None:
    with pytest.raises(
        imagecache.ImagesError, match=re.escape("apt-get install docker.io containerd debootstrap")
    ):
        dockerd._find("tj-no-such-program", "/nonexistent/tj-no-such-program")


def test_without_root_the_build_says_it_needs_root(tmp_path: Path) -> None:
    tjctl = str(Path(sys.executable).parent / "tjctl")
    argv = [tjctl, "images", "build"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop root")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "needs root" in result.stderr and "sudo -E tjctl images build" in result.stderr
    assert "Traceback" not in result.stderr
