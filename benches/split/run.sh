#!/usr/bin/env bash
# The split deployment on one machine, driven through its gateways:
# NATS with JetStream (a server of its own, on a port of its own), a fresh
# PostgreSQL database, a Redis key prefix of its own, two engines, two
# gateways, and `stockbot loadgen --target` playing the players and the Bot
# API. Prints loadgen's report, then the CPU each process spent per
# confirmed trade. Everything is stopped and the Redis keys deleted at the end.
#
# Usage: benches/split/run.sh [SECONDS] [PLAYERS]
# Environment: STOCKBOT_BIN (default target/release/stockbot), DATABASE_ADMIN
# (default postgres://postgres@127.0.0.1:5432/postgres), REDIS_URL (default
# redis://127.0.0.1:6379), NATS_SERVER (default nats-server on PATH or
# /usr/sbin/nats-server), LOADGEN_ARGS (e.g. --timeline), KEEP_LOGS (set:
# keep the processes' logs), WEBHOOK_BURST (N: drive only the first
# gateway's webhook with N connections, without a Bot API).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-20}
players=${2:-2000}
bin=${STOCKBOT_BIN:-$here/../../target/release/stockbot}
admin=${DATABASE_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
nats_bin=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
work=$(mktemp -d /tmp/stockbot-split.XXXXXX)
database=split_$$
nats_port=14222
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" --scan --pattern "${STOCKBOT_REDIS_PREFIX}*" \
    | xargs -r -n 5000 redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" del >/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
for port in 19001 19002 18081 18082 18090 $nats_port; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken: an earlier run still going? (pgrep -fa 'stockbot serve')" >&2
    exit 1
  fi
done

"$nats_bin" -a 127.0.0.1 -p $nats_port -m $((nats_port + 1)) -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
nats_pid=$!
pids+=("$nats_pid")
psql -q "$admin" -c "CREATE DATABASE $database" >/dev/null
export DATABASE_URL=${admin%/*}/$database
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export STOCKBOT_REDIS_PREFIX="split-bench:$$:"
export NATS_URL=nats://127.0.0.1:$nats_port
export TELEGRAM_BOT_TOKEN=1:load TELEGRAM_API_URL=http://127.0.0.1:18090 TELEGRAM_MODE=webhook
export TELEGRAM_WEBHOOK_SECRET=load-secret
# The load is far above Telegram's real limits: raise them, as for paid broadcasts.
export TELEGRAM_RATE_GLOBAL_PER_SEC=100000 TELEGRAM_RATE_CHAT_PER_SEC=1000 TELEGRAM_RATE_GROUP_PER_MIN=100000
export STOCKBOT__LIMITS__PLAYER_COMMANDS_PER_WINDOW=1000000 STOCKBOT__LIMITS__CHAT_COMMANDS_PER_WINDOW=1000000
export STOCKBOT__GAME__GATED=false RUST_LOG=${RUST_LOG:-warn}
"$bin" migrate >/dev/null

start() { # variable role instance port: starts one process, its pid in $variable
  STOCKBOT_ROLE=$2 STOCKBOT_INSTANCE=$3 STOCKBOT_BIND=127.0.0.1:$4 "$bin" serve >"$work/$3.log" 2>&1 &
  pids+=("$!")
  printf -v "$1" '%s' "$!"
}
ready() { # port
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "nothing ready on port $1" >&2
  return 1
}
start engine_a engine engine-a 19001
ready 19001
start engine_b engine engine-b 19002
start gateway_a gateway gateway-a 18081
start gateway_b gateway gateway-b 18082
ready 18081
ready 18082

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
postgres_ticks() {
  local sum=0
  for pid in $(pgrep -f "postgres: .*$database|postgres: walwriter|postgres: checkpointer|postgres: background writer"); do
    sum=$((sum + $(ticks "$pid")))
  done
  echo $sum
}
redis_pid=$(pgrep -x redis-server | head -n 1)
declare -A before
names=(engine_a engine_b gateway_a gateway_b nats_pid redis_pid)
for name in "${names[@]}"; do before[$name]=$(ticks "${!name}"); done
postgres_before=$(postgres_ticks)

if [ -n "${WEBHOOK_BURST:-}" ]; then
  # Only the webhook of the first gateway, WEBHOOK_BURST connections each
  # with one update in flight, counting its answers (no Bot API: replies wait).
  report=$("$bin" loadgen --target http://127.0.0.1:18081 --concurrency "$WEBHOOK_BURST" \
    --seconds "$seconds" --players "$players" ${LOADGEN_ARGS:-} 2>&1)
else
  report=$("$bin" loadgen --target http://127.0.0.1:18081,http://127.0.0.1:18082 \
    --bot-api-bind 127.0.0.1:18090 --seconds "$seconds" --players "$players" ${LOADGEN_ARGS:-} 2>&1)
fi
echo "$report"
if [ -n "${KEEP_LOGS:-}" ]; then
  for port in 19001 19002 18081 18082; do curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics-$port.txt" || true; done
  curl -s "http://127.0.0.1:$((nats_port + 1))/jsz?consumers=true" >"$work/jsz.json" || true
fi
trades=$(echo "$report" | sed -n 's/^confirmed trades: \([0-9]*\).*/\1/p')
hz=$(getconf CLK_TCK)
per_trade() { # ticks
  awk -v t="$1" -v n="${trades:-0}" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.1f", t / hz / n * 1e6; else print "-" }'
}
echo "CPU per confirmed trade (us):"
for name in "${names[@]}"; do
  echo "  $name $(per_trade $(( $(ticks "${!name}") - ${before[$name]} )))"
done
echo "  postgres $(per_trade $(( $(postgres_ticks) - postgres_before )))"
