"""The training_jobs store on SQLite and on PostgreSQL: what one call costs, and how long a
write waits through a server restart.

1. a throwaway PostgreSQL 15 server (tjdevcluster.postgres): initdb, start, role, database;
2. ``update_job`` and ``get`` of one row, N times each, on a SQLite file and on that server
   (loopback TCP, password authentication): the mean per call;
3. the server stopped for ``--down`` seconds while a ``submit`` is made: how long it waits
   before it is written (the store's reconnect wait).

Usage: ``python bench/store_backends.py [--calls 300] [--down 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from tjcore.store import JobStore
from tjdevcluster.postgres import PostgresServer
from tjdevcluster.procs import port_in_use


def per_call_ms(url: str, calls: int) -> tuple[float, float]:
    """Mean milliseconds of update_job and of get on one row of ``url``."""
    store = JobStore(url)
    try:
        job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="bench")
        start = time.perf_counter()
        for i in range(calls):
            store.update_job(job, error=str(i))
        write = (time.perf_counter() - start) / calls * 1000
        start = time.perf_counter()
        for _ in range(calls):
            store.get(job)
        read = (time.perf_counter() - start) / calls * 1000
        return write, read
    finally:
        store.close()


def wait_through_restart(server: PostgresServer, down: float) -> float:
    """Seconds a submit made while the server is down takes until it is written."""
    store = JobStore(server.url)
    try:
        store.list_jobs(limit=1)
        restart = threading.Thread(target=lambda: server.restart(down_for=down))
        restart.start()
        while port_in_use(server.port):
            time.sleep(0.01)
        start = time.monotonic()
        store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="bench")
        waited = time.monotonic() - start
        restart.join()
        return waited
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--down", type=float, default=3.0)
    args = parser.parse_args()
    start = time.monotonic()
    with PostgresServer() as server, tempfile.TemporaryDirectory() as folder:
        took = time.monotonic() - start
        print(f"PostgreSQL server up (initdb, start, role, database): {took:.2f} s")
        print("| backend | update_job (ms) | get (ms) |\n|---|---|---|")
        for name, url in (
            ("SQLite (WAL)", f"sqlite:///{folder}/jobs.db"),
            ("PostgreSQL", server.url),
        ):
            write, read = per_call_ms(url, args.calls)
            print(f"| {name} | {write:.2f} | {read:.2f} |")
        waited = wait_through_restart(server, args.down)
        print(f"submit during a {args.down:.0f} s outage: written after {waited:.2f} s")


if __name__ == "__main__":
    main()
