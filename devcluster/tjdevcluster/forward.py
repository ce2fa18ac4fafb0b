"""A TCP forwarder from the host's loopback into the dev cluster's network namespace.

Development and test scaffolding. With ``--node kubelet`` the API server listens inside
a namespace with no route off the machine; this process listens on ``127.0.0.1:PORT`` of
the host (so kubectl and Helm on the host work with the admin kubeconfig) and opens each
upstream connection from inside that namespace. Nothing else crosses the boundary.

    python -m tjdevcluster.forward --listen-port 16443 --netns tjdev-1234abcd \\
        --target 10.200.0.1:6443
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket

from . import netns


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def _serve(listener: socket.socket, host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    server = await asyncio.start_server(handle, sock=listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--netns", required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT inside the namespace")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.listen_port))  # in the host's namespace
    listener.listen(128)
    listener.setblocking(False)
    netns.enter(args.netns)  # every socket opened from now on is inside the namespace
    asyncio.run(_serve(listener, host, int(port)))


if __name__ == "__main__":
    main()
