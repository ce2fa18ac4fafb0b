#!/usr/bin/env bash
# Install Debian's PostgreSQL 15 server binaries for the tests' throwaway servers, once.
# Idempotent: does nothing when initdb and pg_ctl exist. Needs root (or sudo) and apt.
# The package's own cluster is not used (the tests start their own, tjdevcluster.postgres).
set -euo pipefail

BIN=/usr/lib/postgresql/15/bin

if [[ -x "$BIN/initdb" && -x "$BIN/pg_ctl" && -x "$BIN/postgres" ]]; then
    exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-postgres: $BIN/initdb is missing and this user is not root;" \
            "install it with: apt-get install -y postgresql-15" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: no apt-get here; install PostgreSQL 15 so that $BIN/initdb exists" >&2
    exit 1
fi

echo "install-postgres: installing Debian's postgresql-15 package" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
"$BIN/postgres" --version
