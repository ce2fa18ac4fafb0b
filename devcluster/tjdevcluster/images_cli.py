"""``tjctl images build [--load] [--only trainer|operator|postgres] [--state-dir D] [--json]``.

Development and test scaffolding; ``tjctl`` calls :func:`register` through the
``tjctl.commands`` entry points of devcluster/pyproject.toml.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from . import netns
from .imagecache import ImagesError, cache_root


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM too stops dockerd and cleans up (finally blocks)


def cmd_build(args: argparse.Namespace) -> int:
    """Build every image (or one), optionally load them into the dev cluster's node."""
    from . import dockerd, images
    from .controlplane import ClusterConfig, default_state_dir

    start = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        dockerd.require_root()
        socket = None
        if args.load:
            state = Path(args.state_dir).resolve() if args.state_dir else default_state_dir()
            socket = ClusterConfig(state_dir=state).containerd_socket
            if not socket.exists():
                raise ImagesError(
                    f"--load: no containerd socket at {socket} (the dev cluster's node is not "
                    f"running); {images.NODE_HINT}"
                )
        with dockerd.running(_progress) as engine:
            built = images.build_images(_progress, only=args.only, engine=engine)
            if socket is not None:
                images.load_images(socket, [info.ref for info in built.values()], _progress, engine)
    except (ImagesError, netns.NetnsError) as exc:
        print(f"images build: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "images build: interrupted (run it again: finished steps are cached)", file=sys.stderr
        )
        return 130
    total = time.monotonic() - start
    if args.json:
        out = {name: info.as_dict() for name, info in built.items()}
        print(
            json.dumps(
                {"images": out, "loaded": socket is not None, "seconds": round(total, 1)}, indent=2
            )
        )
        return 0
    for info in built.values():
        limit = images.SIZE_LIMITS[info.name]
        flag = "" if info.size_bytes <= limit else f"  (over the {limit / 1e6:.0f} MB target)"
        print(f"{info.ref}\t{info.size_bytes / 1e6:.0f} MB\t{info.seconds:.0f} s{flag}")
    where = f"; loaded into {socket}" if socket else ""
    print(f"# {len(built)} image(s) in {total:.0f} s, cache {cache_root()}{where}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``images build`` (sets ``func``)."""
    parser = subparsers.add_parser(
        "images",
        help="build the trainer, operator and PostgreSQL images here, without network (dev/test)",
        description="Build the project's images from its Dockerfiles on this machine, with "
        "no network during the builds, in the project's own dockerd. Needs root.",
    )
    actions = parser.add_subparsers(dest="images_command", required=True)
    build = actions.add_parser(
        "build",
        help="build localhost/trainingjob-{trainer,operator,postgres}:<version>",
        description="debootstrap a python:3.11-slim base, download the wheels from PyPI "
        "and the PostgreSQL packages from the Debian mirror, and docker build the images "
        f"with --network=none (all cached under {cache_root()}).",
    )
    build.add_argument(
        "--only", choices=["trainer", "operator", "postgres"], help="build only this image"
    )
    build.add_argument(
        "--load",
        action="store_true",
        help="then load them into the dev cluster node's containerd (tjctl dev-cluster up "
        "--node kubelet)",
    )
    build.add_argument(
        "--state-dir",
        help="dev cluster state (default: $TJ_DEV_CLUSTER_DIR or <repo>/.dev-cluster)",
    )
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=cmd_build)
