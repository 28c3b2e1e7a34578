#!/usr/bin/env bash
# WAL per event row with text TypeID keys against binary (uuid) keys, and with text keys
# without the event-type index: the events table's shape and indexes, 16 tenants, 200,000
# payments. Each table is filled with 200,000 rows (transactions of 50), then 20,000 rows are
# written right after a checkpoint (full-page images included) and 20,000 more after those
# (steady state). Starts a throwaway PostgreSQL 15 cluster on a free loopback port and removes
# it afterwards. Usage: benches/wal_keys/run.sh
set -euo pipefail
PG_BIN=/usr/lib/postgresql/15/bin
here="$(cd "$(dirname "$0")" && pwd)"
as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
dir="$(mktemp -d /tmp/payrail-walkeys.XXXXXX)"
chmod 0777 "$dir"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
trap 'as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_wal_size=4GB" >/dev/null
q() { psql -h 127.0.0.1 -p "$port" -U postgres -qAt "$@"; }
q -f "$here/schema.sql" 2>/dev/null
fill() { PGOPTIONS="-c x.tbl=$1 -c x.n=$2 -c x.start=$3" q -f "$here/fill.sql"; }
for t in ev_text ev_uuid ev_text_lean; do fill "$t" 4000 0; done
for t in ev_text ev_uuid ev_text_lean; do
    q -c "CHECKPOINT"
    a="$(q -c 'SELECT pg_current_wal_lsn()')"; fill "$t" 400 200000
    b="$(q -c 'SELECT pg_current_wal_lsn()')"; fill "$t" 400 220000
    c="$(q -c 'SELECT pg_current_wal_lsn()')"
    echo "{\"table\":\"$t\",\"walBytesPerRowAfterCheckpoint\":$(q -c "SELECT round(pg_wal_lsn_diff('$b','$a')/20000)"),\"walBytesPerRowSteady\":$(q -c "SELECT round(pg_wal_lsn_diff('$c','$b')/20000)")}"
done
