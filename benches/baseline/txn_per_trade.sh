#!/usr/bin/env bash
# The transaction-per-trade baseline (schema.sql, trade.sql) under pgbench:
# prints `baseline_trades_per_sec=N`. Run it on the same machine and database
# server as `stockbot loadgen`, in the same sitting, and compare the two.
# Usage: txn_per_trade.sh [DATABASE_URL] [SECONDS] [CLIENTS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=${1:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
seconds=${2:-15}
clients=${3:-32}
PGOPTIONS=--client-min-messages=warning psql -q -v ON_ERROR_STOP=1 "$url" -f "$here/schema.sql" >/dev/null
report=$(pgbench --no-vacuum --client="$clients" --jobs=2 --time="$seconds" --file="$here/trade.sql" "$url" 2>/dev/null)
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$report")
echo "baseline_trades_per_sec=${tps:?pgbench printed no tps}"
PGOPTIONS=--client-min-messages=warning psql -q "$url" -c 'DROP SCHEMA baseline CASCADE' >/dev/null
