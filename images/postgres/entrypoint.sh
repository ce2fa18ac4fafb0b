#!/bin/sh
# The server's entrypoint: on an empty PGDATA, initdb with POSTGRES_USER as the superuser
# and POSTGRES_PASSWORD as its password, then the database POSTGRES_DB; then the server in
# the foreground (PID 1), listening on every address, password (SCRAM) logins only.
# Other arguments than "postgres" are run as they are (e.g. psql).
set -eu

if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi
if [ "$#" -gt 0 ]; then shift; fi

PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export PGDATA

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: POSTGRES_PASSWORD is empty; set it (the chart takes it from the Secret <release>-postgresql)" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --encoding=UTF8 --locale=C.UTF-8 --auth=scram-sha-256 > /dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        quoted_db="$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')"
        quoted_user="$(printf '%s' "$POSTGRES_USER" | sed 's/"/""/g')"
        echo "CREATE DATABASE \"$quoted_db\" OWNER \"$quoted_user\";" \
            | postgres --single -j -D "$PGDATA" postgres > /dev/null
    fi
    echo "initialized $PGDATA: superuser $POSTGRES_USER, database $POSTGRES_DB"
fi
unset POSTGRES_PASSWORD

exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off "$@"
