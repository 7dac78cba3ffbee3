#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs and starts what
# is missing (protoc, etcd, RabbitMQ, the wasm32-wasip2 target), builds the
# policies, then runs formatting, lint and all tests against real etcd and
# RabbitMQ. etcd runs from a temporary folder on loopback and is stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_protoc
ensure_wasm_target

# etcd: Debian's etcd-server, a throwaway data folder, loopback only.
if ! command -v etcd >/dev/null 2>&1; then
  echo "==> installing etcd (Debian's etcd-server)"
  apt_install etcd-server
fi
etcd_dir=$(mktemp -d)
etcd_client_port=$(free_port)
etcd_peer_port=$(free_port)
echo "==> starting etcd on 127.0.0.1:$etcd_client_port"
etcd --name loan-test --data-dir "$etcd_dir/data" \
  --listen-client-urls "http://127.0.0.1:$etcd_client_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_client_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "loan-test=http://127.0.0.1:$etcd_peer_port" \
  >"$etcd_dir/etcd.log" 2>&1 &
etcd_pid=$!
cleanup() {
  kill "$etcd_pid" 2>/dev/null || true
  wait "$etcd_pid" 2>/dev/null || true
  rm -rf "$etcd_dir"
}
trap cleanup EXIT
if ! wait_port "$etcd_client_port" 30; then
  echo "etcd did not start; its log:" >&2
  cat "$etcd_dir/etcd.log" >&2
  exit 1
fi
export LOAN_TEST_ETCD="http://127.0.0.1:$etcd_client_port"

# RabbitMQ: use the one running on 5672, or install and start it.
if ! port_open 5672; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "==> installing RabbitMQ (Debian's rabbitmq-server)"
    apt_install rabbitmq-server
  fi
  echo "==> starting RabbitMQ"
  rabbitmq-server -detached || true
  if ! wait_port 5672 120; then
    echo "RabbitMQ did not start on 127.0.0.1:5672" >&2
    exit 1
  fi
fi
export LOAN_TEST_AMQP="${LOAN_TEST_AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}"

build_policy

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --quiet --workspace --all-targets -- -D warnings
echo "==> cargo test (the reference policy's own unit tests)"
cargo test --quiet --manifest-path plugins/reference/Cargo.toml
echo "==> cargo test"
cargo test --workspace
