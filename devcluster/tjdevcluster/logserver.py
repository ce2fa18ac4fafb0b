"""A tiny kubelet log endpoint so that ``kubectl logs`` works against the harness.

Development and test scaffolding. The API server proxies ``kubectl logs`` to
``https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/NS/POD/C``
with its kubelet client certificate; this server answers from the harness's log files.
Supported query parameters: ``tailLines``, ``limitBytes``, ``follow``.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .podrunner import HarnessContext


def find_log(logs_dir: Path, namespace: str, pod: str, container: str) -> Path | None:
    """The newest log file of that pod's container (pods are keyed by name and uid)."""
    candidates = sorted(
        (logs_dir / namespace).glob(f"{pod}-*/{container}.log"),
        key=lambda p: p.stat().st_mtime,
    )
    candidates = [p for p in candidates if p.parent.name.rsplit("-", 1)[0] == pod]
    return candidates[-1] if candidates else None


def _handler(ctx: HarnessContext) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            query = dict(urllib.parse.parse_qsl(url.query))
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/NS/POD/CONTAINER is served")
                return
            path = find_log(ctx.logs_dir, parts[1], parts[2], parts[3])
            if path is None:
                self.send_error(404, f"no log for {parts[1]}/{parts[2]}/{parts[3]}")
                return
            data = path.read_bytes()
            if "tailLines" in query:
                lines = data.splitlines(keepends=True)
                data = (
                    b"".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) else b""
                )
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            follow = query.get("follow") == "true"
            if not follow:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if follow:
                self._follow(path, path.stat().st_size)

        def _follow(self, path: Path, offset: int) -> None:
            pid_file = ctx.pods_dir / path.parent.relative_to(ctx.logs_dir) / (path.stem + ".pid")
            idle = 0.0
            while True:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                if chunk:
                    offset += len(chunk)
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    idle = 0.0
                elif not pid_file.exists():
                    idle += 0.2
                    if idle > 1.0:
                        return
                time.sleep(0.2)

    return Handler


def start_log_server(ctx: HarnessContext, pki_dir: Path) -> int:
    """Serve container logs over TLS on a free loopback port; return the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ctx))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(str(pki_dir / "apiserver.crt"), str(pki_dir / "apiserver.key"))
    tls.load_verify_locations(str(pki_dir / "ca.crt"))
    tls.verify_mode = ssl.CERT_REQUIRED
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="logserver", daemon=True).start()
    return int(server.server_address[1])
