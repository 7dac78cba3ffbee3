#!/usr/bin/env bash
# Benchmarks on this machine, printing the figures kept in BENCHMARKS.md:
#   1. time per evaluation inside the worker (no bureau calls);
#   2. loans decided per second end to end: `loan api`, `loan worker` and
#      `loan simulator` as separate release processes against a throwaway
#      etcd and the local RabbitMQ;
#   3. POST /loan latency at a fixed rate;
#   4. peak memory (VmHWM) of the API and worker processes.
# Options through the environment: COUNT (loans for 2, default 20000),
# CONCURRENCY (default 64), RATE (default 500), SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

COUNT=${COUNT:-20000}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-500}
SECONDS_RUN=${SECONDS:-20}

ensure_protoc
ensure_wasm_target
build_policy
echo "==> building loan (release)"
cargo build --quiet --release --bin loan
loan=target/release/loan

if ! command -v etcd >/dev/null 2>&1; then
  apt_install etcd-server
fi
if ! port_open 5672; then
  echo "RabbitMQ must listen on 127.0.0.1:5672" >&2
  exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

etcd_port=$(free_port)
peer_port=$(free_port)
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
wait_port "$etcd_port" 30

api_port=$(free_port)
sim_port=$(free_port)
export RUST_LOG=warn
export LOAN_STORE__ETCD_ENDPOINTS="http://127.0.0.1:$etcd_port"
export LOAN_STORE__ETCD_PREFIX="/loan-bench/$(date +%s)/"
export LOAN_QUEUE__AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
export LOAN_QUEUE__NAME="loan.bench.$(date +%s)"
export LOAN_BUREAU__URL="http://127.0.0.1:$sim_port"
export LOAN_BUREAU__SIMULATOR_ADDRESS="127.0.0.1:$sim_port"
export LOAN_HTTP__ADDRESS="127.0.0.1:$api_port"

echo
echo "== 1. time per evaluation (fixed bureau answers, instantiation included)"
"$loan" bench evaluate --runs 100000 --concurrency 1
"$loan" bench evaluate --runs 100000 --concurrency 2

"$loan" simulator >"$work/simulator.log" 2>&1 &
pids+=($!)
"$loan" worker >"$work/worker.log" 2>&1 &
worker_pid=$!
pids+=($worker_pid)
"$loan" api >"$work/api.log" 2>&1 &
api_pid=$!
pids+=($api_pid)
wait_port "$sim_port" 30
wait_port "$api_port" 60

echo
echo "== 2. loans decided per second end to end ($COUNT loans, $CONCURRENCY in flight)"
"$loan" bench throughput --url "http://127.0.0.1:$api_port" --count "$COUNT" --concurrency "$CONCURRENCY"

echo
echo "== 3. POST /loan latency at $RATE/s for ${SECONDS_RUN}s"
"$loan" bench latency --url "http://127.0.0.1:$api_port" --rate "$RATE" --seconds "$SECONDS_RUN"

echo
echo "== 4. memory"
for role in api worker; do
  pid_var="${role}_pid"
  pid=${!pid_var}
  hwm=$(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")
  rss=$(awk '/VmRSS/ {print $2, $3}' "/proc/$pid/status")
  echo "loan $role: peak RSS $hwm, RSS now $rss"
done

# Remove the bench's queues, now empty, where rabbitmqctl is at hand.
if command -v rabbitmqctl >/dev/null 2>&1; then
  for q in "$LOAN_QUEUE__NAME" "$LOAN_QUEUE__NAME.dead"; do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
fi
