"""Build the project's images (trainer, operator, and the chart's PostgreSQL) on this
machine with no network, and load them into the dev cluster node's containerd: the code
behind ``tjctl images build [--load]``.

Development and test scaffolding. Steps (each cached; see imagecache.py for the layout):

1. the base image ``python:3.11-slim`` from debootstrap (baseimage.py), ``docker import``ed;
2. the wheels of the Python images from PyPI (wheelhouse.py), the .deb files of the
   PostgreSQL image from the Debian mirror (pgdebs.py);
3. ``docker build --network=none --pull=false`` with the classic builder, in the project's
   own dockerd (dockerd.py), of a build context assembled from the files .dockerignore
   allows plus the wheels in ``images/wheels/`` (``--build-arg WHEELS=...``: pip --no-index)
   and the .deb files in ``images/postgres/debs/`` (dpkg --install);
4. optionally ``docker save | ctr images import -`` into the node's containerd (no tarball).

Python callers (the node test tier, bench/node_latency.py) use :func:`build_images` and
:func:`load_images`; ``with dockerd.running(log) as engine`` keeps the engine up between.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from . import baseimage, dockerd, pgdebs, wheelhouse
from .imagecache import (
    ImagesError,
    Log,
    cache_root,
    check_free_space,
    disk_full_error,
    recipe_hash,
    run_step,
    scratch_dir,
)

REPO = Path(__file__).resolve().parents[2]
WHEELS_IN_CONTEXT = "images/wheels"  # the Dockerfiles COPY images/ to /src/images/
WHEELS_BUILD_ARG = f"/src/{WHEELS_IN_CONTEXT}"
DEBS_IN_CONTEXT = "images/postgres/debs"  # images/postgres/Dockerfile COPYs it
# Sizes the images must stay under (docker image inspect -f {{.Size}}).
SIZE_LIMITS = {"trainer": 750_000_000, "operator": 450_000_000, "postgres": 275_000_000}
NODE_HINT = "start it with tjctl dev-cluster up --node kubelet"


@dataclass(frozen=True)
class ImageSpec:
    """One image of the project: its Dockerfile, its repository name, the files of its
    context beyond .dockerignore's, and whether it installs the wheels (a Python image)."""

    name: str
    dockerfile: str
    repository: str
    context: tuple[str, ...] = ()
    python: bool = True


IMAGES = {
    "trainer": ImageSpec("trainer", "trainer-image/Dockerfile", "localhost/trainingjob-trainer"),
    "operator": ImageSpec(
        "operator", "images/operator/Dockerfile", "localhost/trainingjob-operator"
    ),
    "postgres": ImageSpec(
        "postgres",
        "images/postgres/Dockerfile",
        "localhost/trainingjob-postgres",
        context=("images/postgres/entrypoint.sh",),
        python=False,
    ),
}


@dataclass(frozen=True)
class ImageInfo:
    """A built image: its reference, size (bytes) and build time (seconds)."""

    name: str
    ref: str
    image_id: str
    size_bytes: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def project_version() -> str:
    """The version in pyproject.toml (the tag of every image)."""
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def image_ref(name: str) -> str:
    """``localhost/trainingjob-<name>:<version>`` (a pull of it could only go to loopback)."""
    return f"{IMAGES[name].repository}:{project_version()}"


def build_stage_ref(name: str) -> str:
    """The tag of an image's build stage (the cache of its dependencies; never loaded)."""
    return f"{image_ref(name)}-build-stage"


def _allowed_paths() -> list[str]:
    """What .dockerignore lets into the context (its ``!path`` lines)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line[1:].strip().rstrip("/") for line in lines if line.startswith("!")]


def _link_files(files: list[Path], folder: Path) -> None:
    """Hard links to the cache in ``folder`` (copies across file systems)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        try:
            os.link(file, folder / file.name)
        except OSError:
            shutil.copy2(file, folder / file.name)


def assemble_context(dest: Path, wheels: Path | None, debs: Path | None = None) -> None:
    """A build context: the allowed files of the repo, the Dockerfiles and the images' own
    files, the wheels in ``images/wheels/`` and the .deb files in ``images/postgres/debs/``
    (hard links to the cache when possible)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    own = [rel for spec in IMAGES.values() for rel in (spec.dockerfile, *spec.context)]
    for rel in [*_allowed_paths(), ".dockerignore", *own]:
        src, target = REPO / rel, dest / rel
        if src.is_dir():
            shutil.copytree(src, target, ignore=skip, dirs_exist_ok=True)
        elif src.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    folder = dest / WHEELS_IN_CONTEXT
    _link_files(sorted(wheels.glob("*.whl")) if wheels else [], folder)
    _link_files(sorted(debs.glob("*.deb")) if debs else [], dest / DEBS_IN_CONTEXT)
    if wheels and (wheels / wheelhouse.LOCAL_CONSTRAINTS).exists():
        shutil.copy2(wheels / wheelhouse.LOCAL_CONSTRAINTS, folder / wheelhouse.LOCAL_CONSTRAINTS)


def import_base(engine: dockerd.Dockerd, log: Log) -> None:
    """``docker import`` the debootstrap tarball as python:3.11-slim unless already done."""
    tarball = baseimage.ensure_base(log)
    marker = f"tjdevcluster base {recipe_hash(baseimage.recipe())}"
    found = engine.run("image", "inspect", "-f", "{{.Comment}}", baseimage.BASE_TAG, check=False)
    if found.returncode == 0 and found.stdout.strip() == marker:
        return
    changes = [arg for change in baseimage.IMPORT_CHANGES for arg in ("--change", change)]
    engine.run("import", "--message", marker, *changes, str(tarball), baseimage.BASE_TAG)
    log(f"imported {tarball.name} as {baseimage.BASE_TAG}")


def _step_line(line: str) -> str | None:
    return line[:110] if line.startswith("Step ") else None


def _image_id(engine: dockerd.Dockerd, ref: str) -> str | None:
    found = engine.run("image", "inspect", "-f", "{{.Id}}", ref, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def build_image(
    engine: dockerd.Dockerd, name: str, context: Path, log: Log, wheels: bool = True
) -> ImageInfo:
    """``docker build`` one image (classic builder, no network, no pull) and tag it."""
    spec, ref = IMAGES[name], image_ref(name)
    wheels = wheels and spec.python
    start = time.monotonic()
    log(f"docker build {ref} ({spec.dockerfile})")
    common = [
        "--network=none",
        "--pull=false",
        "--force-rm",
        "-f",
        str(context / spec.dockerfile),
        *(["--build-arg", f"WHEELS={WHEELS_BUILD_ARG}"] if wheels else []),
    ]
    logs = cache_root() / "logs"
    run_step(
        engine.argv("build", *common, "-t", ref, str(context)),
        f"build {name}",
        logs / f"build-{name}.log",
        log,
        env=engine.env,
        show=_step_line,
    )
    # Tag the build stage too (all cached, a second): it keeps the next build's cache
    # (the installed dependencies) safe from the prune of dangling images below.
    engine.run(
        "build", "-q", *common, "--target", "build", "-t", build_stage_ref(name), str(context)
    )
    image_id = _image_id(engine, ref)
    if image_id is None:
        raise ImagesError(f"docker build said it built {ref}, but there is no such image")
    size = int(engine.run("image", "inspect", "-f", "{{.Size}}", ref).stdout.strip())
    seconds = time.monotonic() - start
    log(f"  {ref}: {size / 1e6:.0f} MB, {seconds:.0f} s")
    return ImageInfo(name, ref, image_id, size, round(seconds, 1))


def build_images(
    log: Log = print, only: str | None = None, engine: dockerd.Dockerd | None = None
) -> dict[str, ImageInfo]:
    """Build every image (or ``only`` one) and return their info by name.

    Starts and stops the project's own dockerd unless ``engine`` is a running one.
    """
    names = [only] if only else list(IMAGES)
    for name in names:
        if name not in IMAGES:
            raise ImagesError(f"no image {name!r}; choose from {', '.join(IMAGES)}")
    if engine is None:
        with dockerd.running(log) as own:
            return build_images(log, only, own)
    check_free_space(cache_root())
    python = any(IMAGES[name].python for name in names)
    wheels = wheelhouse.ensure_wheels(log) if python else None
    debs = pgdebs.ensure_debs(log) if "postgres" in names else None
    import_base(engine, log)
    built: dict[str, ImageInfo] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="context-", dir=scratch_dir()) as tmp:
            assemble_context(Path(tmp), wheels, debs)
            for name in names:
                built[name] = build_image(engine, name, Path(tmp), log)
        # Earlier builds' layers that no tag needs any more (the cache stays: it is tagged).
        engine.run("image", "prune", "--force", check=False)
    except OSError as exc:
        if exc.errno == 28:
            raise disk_full_error(cache_root()) from None
        raise
    return built


def load_images(
    socket: Path, refs: list[str], log: Log = print, engine: dockerd.Dockerd | None = None
) -> None:
    """Stream each image into the containerd at ``socket`` (namespace k8s.io) with
    ``docker save REF | ctr images import -``: no tarball is written."""
    if not socket.exists():
        raise ImagesError(
            f"no containerd socket at {socket}: the dev cluster node is not running; {NODE_HINT}"
        )
    ctr = shutil.which("ctr") or "/usr/bin/ctr"
    if not os.access(ctr, os.X_OK):
        raise ImagesError(f"ctr not found; {dockerd.INSTALL_HINT}")
    if engine is None:
        with dockerd.running(log) as own:
            return load_images(socket, refs, log, own)
    for ref in refs:
        start = time.monotonic()
        save = subprocess.Popen(
            engine.argv("save", ref), env=engine.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert save.stdout is not None
        imported = subprocess.run(
            [ctr, "--address", str(socket), "-n", "k8s.io", "images", "import", "-"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
        )
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
        saved = save.wait()
        if imported.returncode != 0:  # first: a failed import also breaks docker save's pipe
            raise ImagesError(
                f"ctr images import of {ref} failed: {imported.stderr.strip()[-2000:]}"
            )
        if saved != 0:
            raise ImagesError(f"docker save {ref} failed: {save_err.strip()[-2000:]}")
        listed = subprocess.run(
            [ctr, "--address", str(socket), "-n", "k8s.io", "images", "ls", "-q"],
            capture_output=True,
            text=True,
        )
        if ref not in listed.stdout.split():
            raise ImagesError(f"{ref} is not in the node's containerd after the import")
        log(f"loaded {ref} into {socket} in {time.monotonic() - start:.0f} s")
    return None
